"""Load a profile's config and fill in what a run decides: data paths, classes, knob, seed.

A config in ``configs/`` says how every run of a profile trains (model, batch, lr, schedule,
pipeline). A run adds only where its data lives (``data_root`` and the prepared ``ann_dir``, whose
classes set ``num_classes``), its family and knob, its seed and its work dir; nothing else.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from mmengine.config import Config

from lossbench.families import validate_imbalance
from lossbench.utils import read_json

SPLITS = ("train", "val", "test")


def read_classes(ann_file: str | os.PathLike) -> tuple[str, ...]:
    """Class names of a prepared COCO JSON, in category-id order (ids must be 1..C)."""
    data = read_json(ann_file)
    cats = data.get("categories") if isinstance(data, dict) else None
    if not cats:
        raise ValueError(f"{ann_file}: no 'categories' (expected the output of lossbench prepare)")
    cats = sorted(cats, key=lambda c: c["id"])
    ids = [c["id"] for c in cats]
    if ids != list(range(1, len(cats) + 1)):
        raise ValueError(f"{ann_file}: category ids must be 1..{len(cats)}, got {ids}")
    return tuple(c["name"] for c in cats)


def _set_data(cfg: Config, data_root: Path, ann_dir: Path, classes: tuple[str, ...]) -> None:
    for split in SPLITS:
        ann_file = str(ann_dir / f"{split}.json")
        if cfg.get(f"{split}_dataloader") is not None:
            ds = cfg[f"{split}_dataloader"]["dataset"]
            while "dataset" in ds and ds.get("type") != "CocoDataset":  # Repeat/ClassBalanced wrappers
                ds = ds["dataset"]
            ds.update(data_root=str(data_root), ann_file=ann_file, data_prefix=dict(img=""),
                      metainfo=dict(classes=classes))
        evs = cfg.get(f"{split}_evaluator") or []
        for ev in evs if isinstance(evs, list) else [evs]:
            if ev.get("type") == "CocoMetric":
                ev["ann_file"] = ann_file
    cfg.model.bbox_head.num_classes = len(classes)


def load_config(path: str | os.PathLike, *, data_root: str | os.PathLike | None = None,
                ann_dir: str | os.PathLike | None = None, imbalance: dict[str, Any] | None = None,
                seed: int | None = None, work_dir: str | os.PathLike | None = None) -> Config:
    """Read the config ``path`` and apply a run's settings.

    ``ann_dir`` holds the prepared ``{train,val,test}.json`` (classes and ``num_classes`` come from ``train.json``),
    their ``file_name`` relative to ``data_root``; ``imbalance`` replaces ``model.bbox_head.imbalance`` (validated);
    ``seed`` sets ``randomness`` (seeded, deterministic algorithms). A missing config or prepared file is a
    ``FileNotFoundError``, a setting out of range a ``ValueError`` naming the key.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config {path} does not exist")
    cfg = Config.fromfile(str(path))
    head = cfg.model.bbox_head
    if imbalance is not None:
        head.imbalance = dict(imbalance)
    head.imbalance = validate_imbalance(dict(head.imbalance))
    if ann_dir is not None:
        ann_dir = Path(ann_dir).resolve()
        for split in SPLITS:
            loader = cfg.get(f"{split}_dataloader")
            if loader is not None and not (ann_dir / f"{split}.json").is_file():
                raise FileNotFoundError(f"{ann_dir / f'{split}.json'} does not exist (run `lossbench prepare` first)")
        classes = read_classes(ann_dir / "train.json")
        _set_data(cfg, Path(data_root or ann_dir).resolve(), ann_dir, classes)
    if seed is not None:
        cfg.randomness = dict(seed=int(seed), deterministic=True, diff_rank_seed=False)
    if work_dir is not None:
        cfg.work_dir = str(work_dir)
    return cfg


#: a run's state, not its config: whether and from which checkpoint it resumes
RUNTIME_KEYS = ("resume", "load_from")


def portable(value: Any, root: str | os.PathLike | None = None) -> Any:
    """``value`` (a config dict, list or string) with every path under ``root`` (default: the working
    directory, the repository root under DVC) written relative to it: a run's config on any machine."""
    root = os.path.join(os.path.abspath(root or os.getcwd()), "")
    if isinstance(value, dict):
        return {k: portable(v, root) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(portable(v, root) for v in value)
    if isinstance(value, str) and value.startswith(root):
        return value[len(root):] or "."
    return value


def portable_config(cfg: Config) -> Config:
    """The resolved config as it trains, less :data:`RUNTIME_KEYS`, its paths relative
    (:func:`portable`): what ``lossbench train --print-config`` shows."""
    return Config(portable({k: v for k, v in cfg.to_dict().items() if k not in RUNTIME_KEYS}))


def config_digest(cfg: Config) -> str:
    """SHA-256 (16 hex digits) of :func:`portable_config`: the same on every machine for the same
    command line and commit, and in the run's ``metrics.json``."""
    text = json.dumps(portable_config(cfg).to_dict(), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def scale_schedule(cfg: Config, iters: int) -> None:
    """Make the config's iteration-based schedule a complete one of ``iters`` iterations, in place:
    ``train_cfg.max_iters``, every ``param_scheduler``'s ``begin`` / ``end`` (warm-up and decay
    together) and the checkpoint interval scaled by ``iters / max_iters`` (the T-against-2T
    calibration of the study trains the same config at twice its length)."""
    if not isinstance(iters, int) or iters < 1:
        raise ValueError(f"--iters must be a positive number of iterations, got {iters!r}")
    old = cfg.train_cfg.get("max_iters")
    if not old or cfg.train_cfg.get("type", "IterBasedTrainLoop") != "IterBasedTrainLoop":
        raise ValueError("--iters needs an iteration-based schedule (train_cfg.type IterBasedTrainLoop, max_iters)")
    factor = iters / old
    cfg.train_cfg.max_iters = iters
    if cfg.train_cfg.get("val_interval"):
        cfg.train_cfg.val_interval = max(1, round(cfg.train_cfg.val_interval * factor))
    schedulers = cfg.get("param_scheduler") or []
    for s in schedulers if isinstance(schedulers, list) else [schedulers]:
        if s.get("by_epoch", True):
            raise ValueError("--iters needs every param_scheduler with by_epoch=False")
        for key in ("begin", "end"):
            if s.get(key) is not None:
                s[key] = min(iters, round(s[key] * factor))
    ckpt = (cfg.get("default_hooks") or {}).get("checkpoint")
    if ckpt and ckpt.get("interval"):
        ckpt.interval = max(1, round(ckpt.interval * factor))
