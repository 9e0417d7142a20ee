"""The synth profiles' pretrained backbone: the detector's backbone trained once as an image classifier.

All three papers fine-tune an ImageNet-pretrained backbone, and the voc/coco profiles load one
(``init_cfg=dict(type='Pretrained', checkpoint='torchvision://resnet50')``). The synth profiles do the
same with a backbone pretrained here: the narrow ResNet of the profile's model config, trained as a
multi-label classifier ("which shape classes does this image contain") on images of the shape
generator drawn from a generator seed that no detection set uses. No box, no anchor and no
detection loss is involved, and the detection splits are never read: the images are rendered in
memory from :class:`PretrainSpec`'s own ``data``.

The result is the backbone's ``state_dict`` in half precision (``backbone.pth``, ~6 MB for the
narrow ResNet-18) and ``metrics.json`` (its cost and its held-out accuracy). A run loads it with
MMEngine's ``Pretrained`` initialiser (:func:`lossbench.training.config` configs set
``model.backbone.init_cfg``), with the stem and first stage frozen and BN statistics fixed, as the
voc/coco profiles do.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

#: keys of a profile's ``pretrain`` mapping besides ``data`` (the generator's, as a profile's ``data``)
_NUMBERS = {"steps": int, "batch_size": int, "lr": float, "weight_decay": float, "warmup": int, "seed": int,
            "eval_every": int}


@dataclass(frozen=True)
class PretrainSpec:
    """How the backbone is pretrained (``params.yaml``: ``profiles.<name>.pretrain``)."""

    data: dict[str, Any] = field(default_factory=dict)  # generator options: seed, n_train, n_val + SynthParams fields
    steps: int = 900  # optimizer steps
    batch_size: int = 32
    lr: float = 2e-3  # AdamW, linear warm-up then cosine decay to 1 %
    weight_decay: float = 1e-4
    warmup: int = 50
    seed: int = 0  # initialisation, batch order and flips
    eval_every: int = 150  # held-out evaluation interval (steps)

    @classmethod
    def from_mapping(cls, spec: Mapping[str, Any], where: str) -> PretrainSpec:
        """Read and check a ``pretrain`` mapping; errors name ``where`` and the key."""
        if not isinstance(spec, Mapping):
            raise ValueError(f"{where} must be a mapping, got {spec!r}")
        unknown = set(spec) - set(_NUMBERS) - {"data"}
        if unknown:
            raise ValueError(f"{where}: unknown keys {sorted(unknown)}; allowed data, {', '.join(_NUMBERS)}")
        kw: dict[str, Any] = {}
        for key, kind in _NUMBERS.items():
            if key in spec:
                value = spec[key]
                whole = kind is not int or (isinstance(value, int | float) and value == int(value))
                if isinstance(value, bool) or not isinstance(value, int | float) or not whole:
                    kind_name = "an integer" if kind is int else "a number"
                    raise ValueError(f"{where}.{key} must be {kind_name}, got {value!r}")
                kw[key] = kind(value)
        out = cls(data=dict(spec.get("data") or {}), **kw)
        for key in ("steps", "batch_size", "eval_every"):
            if getattr(out, key) < 1:
                raise ValueError(f"{where}.{key} must be >= 1, got {getattr(out, key)}")
        if not out.lr > 0 or out.weight_decay < 0 or out.warmup < 0:
            raise ValueError(f"{where}: lr must be > 0, weight_decay and warmup >= 0")
        for key in ("seed", "n_train", "n_val"):
            if key not in out.data:
                raise ValueError(f"{where}.data.{key} is required (the pretraining images' generator seed and sizes)")
        if int(out.data["n_train"]) < out.batch_size or int(out.data["n_val"]) < 1:
            raise ValueError(f"{where}.data: n_train must be >= batch_size and n_val >= 1")
        return out


def check_disjoint(spec: PretrainSpec, params: Mapping[str, Any], where: str) -> None:
    """Refuse a pretraining generator seed that a detection set of ``params`` also uses.

    The generator draws every image (and its texture banks) from its seed, so sets from different
    seeds share no image; the same seed would reproduce detection images. Every synth profile's
    ``data.seed`` is checked."""
    seed = int(spec.data["seed"])
    for name, prof in (params.get("profiles") or {}).items():
        prof = prof or {}
        if prof.get("dataset") == "synth" and int((prof.get("data") or {}).get("seed", 0)) == seed:
            raise ValueError(f"{where}.data.seed = {seed} is also profiles.{name}.data.seed: the pretraining "
                             "images must come from a generator seed no detection set uses")


# ------------------------------------------------------------------ data
def _print(msg: str) -> None:
    print(msg, flush=True)


def render(data: Mapping[str, Any], log: Callable[[str], None] = _print) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The pretraining images, in memory: ``{'train': (images, targets), 'val': (...)}`` with images
    ``(N, H, W, 3)`` uint8 in the BGR order of MMCV's loader (decoded from the generator's JPEG bytes
    as ``LoadImageFromFile`` decodes the detection images) and targets ``(N, C)`` float32, 1 where
    the image holds a labelled shape of class c (distractors are not classes)."""
    import mmcv

    from lossbench.data.classes import SYNTH_CLASSES
    from lossbench.data.synth import generate_kwargs
    from lossbench.data.synth.render import iter_images

    kw = generate_kwargs({k: v for k, v in data.items() if k not in ("n_train", "n_val")} | {"anchor_config": "none"},
                         where="pretrain.data")
    params, seed = kw["params"], int(data["seed"])
    out = {}
    for split, n in (("train", int(data["n_train"])), ("val", int(data["n_val"]))):
        t0 = time.perf_counter()
        recs = list(iter_images(params, seed, [(split, i) for i in range(1, n + 1)], workers=kw.get("workers", 1)))
        images = np.stack([mmcv.imfrombytes(r.jpeg, flag="color", channel_order="bgr") for r in recs])
        targets = np.zeros((n, len(SYNTH_CLASSES)), dtype=np.float32)
        for i, r in enumerate(recs):
            targets[i, np.asarray(r.labels, dtype=int)] = 1.0
        out[split] = (images, targets)
        log(f"pretrain: rendered {n} {split} images in {time.perf_counter() - t0:.1f} s")
    return out


# ------------------------------------------------------------------ model
def backbone_config(model_cfg: Mapping[str, Any]) -> dict[str, Any]:
    """The backbone of a detector config, as pretraining builds it: trainable everywhere, BN
    statistics moving, no initialiser (the checkpoint is what this produces)."""
    cfg = dict(model_cfg["backbone"])
    cfg.update(frozen_stages=-1, norm_eval=False, init_cfg=None)
    return cfg


def build_classifier(backbone_cfg: Mapping[str, Any], num_classes: int):
    """The backbone followed by global average pooling of its last stage and one linear layer."""
    import torch
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules
    from mmengine.logging import MMLogger

    register_all_modules(init_default_scope=False)

    class Classifier(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.backbone = MODELS.build(dict(backbone_cfg))
            logger = MMLogger.get_current_instance()
            level = logger.level
            logger.setLevel(logging.WARNING)  # init_weights logs every tensor
            try:
                self.backbone.init_weights()
            finally:
                logger.setLevel(level)
            with torch.no_grad():
                width = self.backbone(torch.zeros(1, 3, 64, 64))[-1].shape[1]
            self.fc = torch.nn.Linear(width, num_classes)

        def forward(self, x):
            return self.fc(self.backbone(x)[-1].mean(dim=(2, 3)))

    return Classifier()


def normaliser(preprocessor: Mapping[str, Any]):
    """``uint8 (N, H, W, 3) -> float (N, 3, H, W)`` as the detector's ``DetDataPreprocessor``
    normalises its input (channel order, mean, std)."""
    import torch

    mean = torch.tensor(preprocessor["mean"], dtype=torch.float32).view(1, 3, 1, 1)
    std = torch.tensor(preprocessor["std"], dtype=torch.float32).view(1, 3, 1, 1)
    flip = bool(preprocessor.get("bgr_to_rgb", False))

    def apply(images: np.ndarray):
        x = torch.from_numpy(np.ascontiguousarray(images[..., ::-1] if flip else images)).permute(0, 3, 1, 2).float()
        return ((x - mean) / std).contiguous(memory_format=torch.channels_last)

    return apply


def average_precision(scores: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Per class: the area under the precision-recall curve of ``scores`` ranking ``targets``
    (mean of the precision at each positive, ties broken by order); NaN for a class with no positive."""
    aps = np.full(scores.shape[1], np.nan)
    for c in range(scores.shape[1]):
        t = targets[np.argsort(-scores[:, c], kind="stable"), c] > 0
        if t.any():
            hits = np.cumsum(t)
            aps[c] = float(np.mean(hits[t] / (np.flatnonzero(t) + 1)))
    return aps


def lr_at(step: int, spec: PretrainSpec) -> float:
    """Linear warm-up from 1 % over ``warmup`` steps, then cosine decay to 1 % at ``steps``."""
    if step < spec.warmup:
        return spec.lr * (0.01 + 0.99 * step / spec.warmup)
    t = (step - spec.warmup) / max(1, spec.steps - spec.warmup)
    return spec.lr * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * t)))


def evaluate(model, images: np.ndarray, targets: np.ndarray, norm, batch: int = 256) -> dict[str, float]:
    """Held-out metrics: mean AP over classes, subset accuracy at p > 0.5, mean BCE."""
    import torch

    model.eval()
    with torch.no_grad():
        logits = torch.cat([model(norm(images[i:i + batch])) for i in range(0, len(images), batch)])
    model.train()
    t = torch.from_numpy(targets)
    bce = float(torch.nn.functional.binary_cross_entropy_with_logits(logits, t))
    p = torch.sigmoid(logits).numpy()
    return {"mAP": round(100 * float(np.nanmean(average_precision(p, targets))), 2),
            "subset_accuracy": round(100 * float(np.mean(((p > 0.5) == (targets > 0)).all(axis=1))), 2),
            "bce": round(bce, 5)}


def pretrain(spec: PretrainSpec, model_cfg: Mapping[str, Any], out: str | os.PathLike,
             log: Callable[[str], None] = _print) -> dict[str, Any]:
    """Train the classifier, write ``out/backbone.pth`` and ``out/metrics.json`` atomically (the
    folder as a whole) and return the metrics."""
    import torch

    from lossbench.data.classes import SYNTH_CLASSES
    from lossbench.utils import atomic_path, atomic_write_json

    t_start = time.perf_counter()
    sets = render(spec.data, log)
    images, targets = sets["train"]
    t_data = time.perf_counter() - t_start
    torch.manual_seed(spec.seed)
    rng = np.random.default_rng(spec.seed)
    model = build_classifier(backbone_config(model_cfg), len(SYNTH_CLASSES)).to(memory_format=torch.channels_last)
    model.train()
    norm = normaliser(model_cfg["data_preprocessor"])
    opt = torch.optim.AdamW(model.parameters(), lr=spec.lr, weight_decay=spec.weight_decay)
    order, pos, curve = rng.permutation(len(images)), 0, []
    t0 = time.perf_counter()
    for step in range(spec.steps):
        if pos + spec.batch_size > len(order):
            order, pos = rng.permutation(len(images)), 0
        idx = np.sort(order[pos:pos + spec.batch_size])
        pos += spec.batch_size
        flips = rng.random(len(idx)) < 0.5
        batch = images[idx].copy()
        batch[flips] = batch[flips, :, ::-1]
        for g in opt.param_groups:
            g["lr"] = lr_at(step, spec)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(model(norm(batch)), torch.from_numpy(targets[idx]))
        if not torch.isfinite(loss):
            raise FloatingPointError(f"pretrain: non-finite loss at step {step + 1}")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if (step + 1) % spec.eval_every == 0 or step + 1 == spec.steps:
            held = evaluate(model, *sets["val"], norm)
            curve.append({"step": step + 1, "train_bce": round(float(loss.detach()), 5), **held})
            rate = (step + 1) / (time.perf_counter() - t0)
            log(f"pretrain: step {step + 1}/{spec.steps}  held-out mAP {held['mAP']:.1f}  "
                f"subset acc {held['subset_accuracy']:.1f}  ({rate:.1f} steps/s, "
                f"~{(spec.steps - step - 1) / rate / 60:.1f} min left)")
    t_train = time.perf_counter() - t0
    state = {k: (v.detach().half() if v.is_floating_point() else v.detach()).contiguous()
             for k, v in model.backbone.state_dict().items()}
    with atomic_path(out) as tmp:
        tmp.mkdir()
        torch.save({"state_dict": state, "meta": {"classes": list(SYNTH_CLASSES)}}, tmp / "backbone.pth")
        blob = (tmp / "backbone.pth").read_bytes()
        metrics = {
            "spec": asdict(spec), "classes": list(SYNTH_CLASSES),
            "backbone_parameters": int(sum(p.numel() for p in model.backbone.parameters())),
            "checkpoint": {"file": "backbone.pth", "bytes": len(blob), "sha256": hashlib.sha256(blob).hexdigest(),
                           "dtype": "float16"},
            "held_out": curve[-1] if curve else {}, "curve": curve,
            "seconds": {"render": round(t_data, 1), "train": round(t_train, 1),
                        "total": round(time.perf_counter() - t_start, 1)},
            "threads": torch.get_num_threads(),
        }
        atomic_write_json(tmp / "metrics.json", metrics)
    return metrics
