"""Where the synth profile's train step goes, for every head: data, network, loss, optimizer.

For MMDetection's stock RetinaHead + FocalLoss and each family of
``lossbench.families.FAMILY_ORDER`` (``imbalance={'type': family}``, its paper
defaults), on the profile's config (model, batch, image size, optimizer, clipping,
``custom_hooks``' ChannelsLastHook), times in one process, interleaved, after a
warm-up (medians of the repeats):

- data: the next batch of the config's training dataloader over the prepared
  ``data/synth`` set (loading, pipeline, collate) plus the data preprocessor; skipped,
  with a note, when ``data/synth/prepared/train.json`` is missing (the other parts
  then use a generated batch of the same shape);
- network forward + backward: backbone, neck and head convolutions, backward from
  the plain sum of the head's outputs (no anchors, no assignment);
- loss + assignment: ``bbox_head.loss_by_feat`` on precomputed head outputs (anchors,
  MaxIoU assignment, the family's classification loss, the box loss), forward and
  backward of that part alone;
- optimizer step: the configured optimizer on the gradients of one real step;
- the train step: ``model.train_step`` with the config's ``OptimWrapper`` (data
  preprocessor, loss, backward, clip_grad, optimizer step, zero_grad), as training runs it.

On the config's own head it also compares the choices the config makes: the train
step with channels_last parameters against contiguous ones, and the AdamW step fused
against foreach against the single-tensor loop.

    python benchmarks/bench_step.py [--repeats 20] [--batch N] [--threads N] [--out MD] [--json OUT]
"""

from __future__ import annotations

import argparse
import copy
import json
from collections.abc import Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace

import bench_heads
import torch
from bench_heads import CONFIG, REPO, STOCK, Timed, median_ms, time_interleaved
from mmengine.config import Config

DATA_ROOT = REPO / "data/synth/raw"
ANN_DIR = REPO / "data/synth/prepared"
#: the AdamW implementations: ``fused=True``, ``foreach=True``, neither (a loop over the tensors)
OPT_MODES = ("fused", "foreach", "single-tensor")
LAYOUTS = ("channels_last", "contiguous")
#: the per-head parts: key in the result -> the component's name in the table
PARTS = {
    "step_ms": "train step (preprocessor + loss + backward + clip_grad + optimizer)",
    "net_ms": "network forward + backward (backbone, neck, head convs; loss = sum of outputs)",
    "loss_ms": "loss + assignment, forward + backward (`loss_by_feat` on precomputed outputs)",
    "optimizer_ms": "optimizer step",
}


def _rel(path: Path | str) -> str:
    p = Path(path).resolve()
    return str(p.relative_to(REPO)) if p.is_relative_to(REPO) else str(p)


def optimizer_mode(opt_cfg: Mapping) -> str:
    """Which of :data:`OPT_MODES` an optimizer config asks for (torch's CPU default: the loop)."""
    if opt_cfg.get("fused"):
        return "fused"
    return "foreach" if opt_cfg.get("foreach") else "single-tensor"


def make_optimizer(params, opt_cfg: Mapping, mode: str) -> torch.optim.Optimizer:
    """The config's optimizer (``type`` a ``torch.optim`` class, its other keys) in ``mode``."""
    kwargs = {k: v for k, v in opt_cfg.items() if k not in ("type", "fused", "foreach")}
    flags = {"fused": dict(fused=True), "foreach": dict(foreach=True),
             "single-tensor": dict(foreach=False, fused=False)}[mode]
    return getattr(torch.optim, opt_cfg["type"])(params, **kwargs, **flags)


def image_size(cfg: Config, default: int = 96) -> int:
    """The training pipeline's ``Resize`` scale (its longer side), else ``default``."""
    for t in cfg.train_dataloader.dataset.get("pipeline", []):
        if t.get("type") == "Resize" and t.get("scale"):
            s = t["scale"]
            return int(max(s) if isinstance(s, Sequence) else s)
    return default


def synthetic_batch(n: int, size: int, num_classes: int) -> dict:
    """A collated batch as the training dataloader gives it: ``n`` uint8 ``size`` px images and
    their ``DetDataSample`` (4 boxes each), for the data preprocessor."""
    from mmdet.structures import DetDataSample
    from mmengine.structures import InstanceData

    g = torch.Generator().manual_seed(0)
    inputs, samples = [], []
    for i in range(n):
        inputs.append(torch.randint(0, 256, (3, size, size), generator=g, dtype=torch.uint8))
        xy = torch.rand(4, 2, generator=g) * size * 0.6
        wh = 12 + torch.rand(4, 2, generator=g) * size * 0.35
        s = DetDataSample(metainfo=dict(img_id=i, img_path="", ori_shape=(size, size), img_shape=(size, size),
                                        scale_factor=(1.0, 1.0), flip=False, flip_direction=None))
        s.gt_instances = InstanceData(bboxes=torch.cat([xy, (xy + wh).clamp(max=size)], 1),
                                      labels=torch.randint(0, num_classes, (4,), generator=g))
        samples.append(s)
    return {"inputs": inputs, "data_samples": samples}


def build_train_loader(cfg: Config, seed: int = 0):
    """The config's training dataloader, as the runner builds it (``cfg`` is not modified)."""
    from mmdet.utils import register_all_modules
    from mmengine.runner import Runner

    register_all_modules()
    return Runner.build_dataloader(copy.deepcopy(cfg.train_dataloader), seed=seed)


def load_profile(cfg_path: Path | str, data_root: Path | str | None, ann_dir: Path | str | None,
                 batch: int | None = None) -> tuple[Config, str | None]:
    """The config with the data paths set as a run sets them (``load_config``), and ``None``; or,
    when ``ann_dir/train.json`` is missing, the config without data and the reason."""
    from lossbench.training.config import load_config

    note = None
    train_json = Path(ann_dir) / "train.json" if ann_dir is not None else None
    if train_json is None or not train_json.is_file():
        note = f"no {_rel(train_json) if train_json else 'ann dir'} (run `lossbench fetch` and `prepare`)"
    else:
        try:
            return _with_batch(load_config(cfg_path, data_root=data_root, ann_dir=ann_dir, seed=0), batch), None
        except (FileNotFoundError, ValueError) as e:
            note = f"{type(e).__name__}: {e}"
    return _with_batch(load_config(cfg_path, seed=0), batch), note


def _with_batch(cfg: Config, batch: int | None) -> Config:
    if batch is not None:
        if batch < 1:
            raise ValueError(f"batch must be >= 1, got {batch}")
        cfg.train_dataloader.batch_size = batch
    return cfg


@contextmanager
def training_settings(cfg: Config):
    """What the runner sets for a run and a benchmark should too: deterministic algorithms
    (``randomness.deterministic``) and OpenCV's threads (``env_cfg.mp_cfg``); restored after."""
    import cv2

    det = torch.are_deterministic_algorithms_enabled()
    warn = torch.is_deterministic_algorithms_warn_only_enabled()
    cv_threads = cv2.getNumThreads()
    try:
        if (cfg.get("randomness") or {}).get("deterministic"):
            torch.use_deterministic_algorithms(True)
        n = ((cfg.get("env_cfg") or {}).get("mp_cfg") or {}).get("opencv_num_threads")
        if n is not None:
            cv2.setNumThreads(int(n))
        yield
    finally:
        torch.use_deterministic_algorithms(det, warn_only=warn)
        cv2.setNumThreads(cv_threads)


def channels_last_configured(cfg: Config) -> bool:
    return any(h.get("type") == "ChannelsLastHook" for h in cfg.get("custom_hooks") or [])


def to_channels_last(model) -> None:
    """What the config's ``ChannelsLastHook`` does before training."""
    from lossbench.training.hooks import ChannelsLastHook

    ChannelsLastHook().before_train(SimpleNamespace(model=model))


def head_parts(model, cfg: Config, data_batch: dict, opt_modes: Sequence[str]) -> dict[str, Timed]:
    """The timed parts of one head's step on ``data_batch`` (a collated batch):
    ``net``, ``loss``, ``opt:<mode>`` for each of ``opt_modes`` and ``step``."""
    from mmengine.optim import build_optim_wrapper

    with torch.no_grad():
        data = model.data_preprocessor(data_batch, True)
    inputs, samples = data["inputs"], data["data_samples"]
    head = model.bbox_head

    def clear():
        model.zero_grad(set_to_none=True)

    def net():
        cls, reg = head(model.extract_feat(inputs))
        (sum(c.sum() for c in cls) + sum(r.sum() for r in reg)).backward()

    with torch.no_grad():
        cls, reg = head(model.extract_feat(inputs))
    outs = [t.detach().clone().requires_grad_() for t in (*cls, *reg)]  # leaves, layout kept
    gts = [s.gt_instances for s in samples]
    metas = [s.metainfo for s in samples]

    def loss():
        total, _ = model.parse_losses(head.loss_by_feat(outs[:len(cls)], outs[len(cls):], gts, metas))
        total.backward()

    def clear_outs():
        for t in outs:
            t.grad = None

    # the optimizer steps from the gradients of one whole step, put back before each
    params = [p for p in model.parameters() if p.requires_grad]
    clear()
    model.parse_losses(model.loss(inputs, samples))[0].backward()
    grads = [p.grad for p in params]
    clear()

    def set_grads():
        for p, g in zip(params, grads, strict=True):
            p.grad = g

    wrapper = build_optim_wrapper(model, copy.deepcopy(cfg.optim_wrapper))
    parts = {"net": Timed(net, clear), "loss": Timed(loss, clear_outs)}
    for mode in opt_modes:
        parts[f"opt:{mode}"] = Timed(make_optimizer(params, cfg.optim_wrapper.optimizer, mode).step, set_grads)
    parts["step"] = Timed(lambda: model.train_step(data_batch, wrapper), clear)
    return parts


def breakdown(cfg_path: Path | str = CONFIG, *, heads: Sequence[str] | None = None, batch: int | None = None,
              repeats: int = 20, warmup: int = 3, data_root: Path | str | None = DATA_ROOT,
              ann_dir: Path | str | None = ANN_DIR) -> dict:
    """Median milliseconds of each part of the train step of every head (stock first, then the
    families; ``heads`` picks some, stock always included), the data part once, and the
    layout and optimizer choices on the config's own head. See the module's docstring."""
    cfg, data_note = load_profile(cfg_path, data_root, ann_dir, batch)
    names = list(dict.fromkeys([STOCK, *(heads or bench_heads.heads())]))
    own = cfg.model.bbox_head.imbalance["type"]
    ref = own if own in names else next((n for n in names if n != STOCK), STOCK)
    layout = "channels_last" if channels_last_configured(cfg) else "contiguous"
    other_layout = next(x for x in LAYOUTS if x != layout)
    mode = optimizer_mode(cfg.optim_wrapper.optimizer)
    n = cfg.train_dataloader.batch_size
    size = image_size(cfg)

    with training_settings(cfg):
        fns: dict[str, Timed] = {}
        if data_note is None:
            it = iter(build_train_loader(cfg))
            data_batch = next(it)
        else:
            data_batch = synthetic_batch(n, size, cfg.model.bbox_head.num_classes)
        shape = None
        for name in names:
            model = bench_heads.build(cfg, name)
            if shape is None:
                with torch.no_grad():
                    shape = list(model.data_preprocessor(data_batch, True)["inputs"].shape)
            if name == ref:
                if data_note is None:
                    pre = model.data_preprocessor
                    fns["data"] = Timed(lambda pre=pre: pre(next(it), True))
                alt = copy.deepcopy(model)
                if other_layout == "channels_last":
                    to_channels_last(alt)
            if layout == "channels_last":
                to_channels_last(model)
            parts = head_parts(model, cfg, data_batch, OPT_MODES if name == ref else (mode,))
            fns.update({f"{name}/{k}": v for k, v in parts.items()})
            if name == ref:
                fns[f"{name}/step:{other_layout}"] = head_parts(alt, cfg, data_batch, ())["step"]
        times = {k: median_ms(v) for k, v in time_interleaved(fns, repeats, warmup).items()}

    per_head = {}
    for name in names:
        per_head[name] = {"step_ms": times[f"{name}/step"], "net_ms": times[f"{name}/net"],
                          "loss_ms": times[f"{name}/loss"], "optimizer_ms": times[f"{name}/opt:{mode}"]}
    for v in per_head.values():
        v["ratio_to_stock"] = v["step_ms"] / per_head[STOCK]["step_ms"]
    rounded = {k: {kk: round(vv, 3) for kk, vv in v.items()} for k, v in per_head.items()}
    return {
        "config": _rel(cfg_path), "batch": n, "input_shape": shape, "repeats": repeats, "warmup": warmup,
        "threads": torch.get_num_threads(),
        "data_source": None if data_note else _rel(ann_dir), "data_ms": None if data_note else round(times["data"], 3),
        "data_note": data_note, "reference": ref, "layout": layout, "optimizer": mode,
        "optimizer_type": cfg.optim_wrapper.optimizer["type"],
        "clip_grad": dict(cfg.optim_wrapper.get("clip_grad") or {}) or None,
        "heads": rounded,
        "layout_ms": {layout: rounded[ref]["step_ms"], other_layout: round(times[f"{ref}/step:{other_layout}"], 3)},
        "optimizer_ms": {m: round(times[f"{ref}/opt:{m}"], 3) for m in OPT_MODES},
    }


def markdown(res: Mapping, goals: Mapping[str, float] | None = None, level: int = 2) -> list[str]:
    """The result of :func:`breakdown` as markdown: the step per head with its ratio to stock
    (and ``goals``, a family's largest allowed ratio), the breakdown, and the layout and
    optimizer choices. ``level``: the heading level of the section."""
    goals = goals or {}
    h, hh = "#" * level, "#" * (level + 1)
    heads, ref = res["heads"], res["reference"]
    opt = f"{res['optimizer_type']}, {res['optimizer']}"
    clip = res["clip_grad"]
    shape = "x".join(str(x) for x in res["input_shape"][-2:])
    data = (f"one batch from `{res['data_source']}` (the config's training dataloader)" if res["data_ms"] is not None
            else f"generated images (the data part is skipped: {res['data_note']})")
    lines = [
        f"{h} Train step by part, every head", "",
        f"`{res['config']}`: narrow ResNet-18 + FPN + RetinaNet head, batch {res['batch']} at {shape} px, "
        f"{opt}" + (f", clip_grad max_norm {clip.get('max_norm')}" if clip else "")
        + f", {res['layout']} parameters; deterministic algorithms as in training. Input: {data}. "
        f"Medians of {res['repeats']} interleaved repeats after {res['warmup']} warm-up rounds, "
        f"{res['threads']} threads.", "",
        f"{hh} Train step vs MMDetection's stock RetinaHead + FocalLoss", "",
        "| head | ms / step | ratio to stock | goal | met |", "|---|---|---|---|---|"]
    for name, v in heads.items():
        goal = goals.get(name)
        met = "" if goal is None else ("yes" if v["ratio_to_stock"] <= goal else "**no**")
        lines.append(f"| {name} | {v['step_ms']:.1f} | {v['ratio_to_stock']:.3f} | "
                     f"{'' if goal is None else f'<= {goal:.2f}'} | {met} |")
    lines += ["", f"{hh} Breakdown", "",
              "Share of step: of the same head's train step (the data part: of the "
              f"{ref} head's). The parts overlap the step, they are not a partition: the step also holds the "
              "data preprocessor, clip_grad and zero_grad, the network part sums its outputs instead of the loss.",
              "", "| component | ms (median) | share of step |", "|---|---|---|"]
    if res["data_ms"] is not None:
        lines.append(f"| data: load + pipeline + collate + preprocessor, one batch (every head) | "
                     f"{res['data_ms']:.1f} | {res['data_ms'] / heads[ref]['step_ms']:.2f} |")
    else:
        lines.append(f"| data: skipped ({res['data_note']}) | - | - |")
    for name, v in heads.items():
        for key, label in PARTS.items():
            label = f"optimizer step ({opt})" if key == "optimizer_ms" else label
            lines.append(f"| {name}: {label} | {v[key]:.1f} | {v[key] / v['step_ms']:.2f} |")
    lay, om = res["layout_ms"], res["optimizer_ms"]
    lines += ["", f"{hh} Layout and optimizer ({ref} head)", "",
              "| choice | ms (median) | ratio to configured |", "|---|---|---|"]
    for name, ms in lay.items():
        mark = " (configured)" if name == res["layout"] else ""
        lines.append(f"| train step, {name} parameters{mark} | {ms:.1f} | {ms / lay[res['layout']]:.3f} |")
    for name, ms in om.items():
        mark = " (configured)" if name == res["optimizer"] else ""
        lines.append(f"| {res['optimizer_type']} step, {name}{mark} | {ms:.2f} | "
                     f"{ms / om[res['optimizer']]:.3f} |")
    return lines + [""]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default=str(CONFIG))
    p.add_argument("--batch", type=int, default=None, help="images per step (default: the config's)")
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    p.add_argument("--data-root", default=str(DATA_ROOT))
    p.add_argument("--ann-dir", default=str(ANN_DIR), help="the prepared train.json's folder")
    p.add_argument("--out", help="write the markdown here")
    p.add_argument("--json", help="write the results here")
    a = p.parse_args(argv)
    bench_heads.set_threads(a.threads)
    res = breakdown(a.config, batch=a.batch, repeats=a.repeats, warmup=a.warmup, data_root=a.data_root,
                    ann_dir=a.ann_dir)
    text = "\n".join([f"Machine: {bench_heads.env_line()}.", "", *markdown(res)])
    print(text)
    if a.out:
        Path(a.out).write_text(text)
    if a.json:
        Path(a.json).write_text(json.dumps({"env": bench_heads.env_line(), **res}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
