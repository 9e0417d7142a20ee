"""Train-step time of each family against MMDetection's stock RetinaHead + FocalLoss.

Same backbone, neck, batch and anchors; only the head class and its loss differ.
Every head of :func:`heads` (stock, then ``lossbench.families.FAMILY_ORDER``) is
timed in one process, interleaved, after a warm-up; the median of the repeats is
reported with the ratio to stock, and the step is broken down into its parts
(``bench_step.py``). Also times the classification loss alone (focal vs mmdet's
FocalLoss; OHEM's per-image top-k vs a full sort).

This module also holds what the benchmarks share: building a head's model
(:func:`build`), interleaved timing (:func:`time_interleaved`) and the machine line
of a report (:func:`env_line`).

    python benchmarks/bench_heads.py [--config CFG] [--repeats 20] [--threads N] [--json OUT]
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import os
import statistics
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from mmengine.config import Config
from mmengine.logging import MMLogger

import lossbench.models.registry  # noqa: F401
from lossbench.families import FAMILY_ORDER
from lossbench.models.losses.functional import focal_loss, hard_negative_ce

REPO = Path(__file__).resolve().parents[1]
#: the synth profile's config, the model every speed measurement uses
CONFIG = REPO / "configs/synth/retinanet_r18n_fpn_synth.py"
STOCK = "stock"


def heads() -> tuple[str, ...]:
    """The heads a benchmark compares: MMDetection's stock head, then every family of the table."""
    return (STOCK, *FAMILY_ORDER)


def build(cfg: Path | str | Config, family: str | dict | None):
    """The config's model, in training mode, with ``family``'s head.

    ``family``: ``None`` or ``"stock"`` gives MMDetection's ``RetinaHead`` + ``FocalLoss``
    (gamma 2, alpha 0.25); a family name gives ``ImbalanceRetinaHead`` with
    ``imbalance={'type': family}`` (its paper defaults); a dict is the ``imbalance``
    itself. ``cfg`` is a path or a loaded config (not modified). The backbone's
    ``init_cfg`` is dropped: the weights do not change the time, and the synth profile's
    pretrained backbone is a pipeline output that need not exist.
    """
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules

    register_all_modules()
    cfg = Config.fromfile(str(cfg)) if not isinstance(cfg, Config) else cfg
    model_cfg = copy.deepcopy(cfg.model)
    model_cfg.backbone.init_cfg = None
    head = model_cfg.bbox_head
    if family is None or family == STOCK:
        head.type = "RetinaHead"
        for key in ("imbalance", "prior_prob", "cls_weight"):
            head.pop(key, None)
        head.loss_cls = dict(type="FocalLoss", use_sigmoid=True, gamma=2.0, alpha=0.25, loss_weight=1.0)
    else:
        head.imbalance = dict(family) if isinstance(family, Mapping) else {"type": family}
    torch.manual_seed(0)
    model = MODELS.build(model_cfg)
    logger = MMLogger.get_current_instance()
    level = logger.level
    logger.setLevel(logging.WARNING)  # not a line per parameter
    try:
        model.init_weights()
    finally:
        logger.setLevel(level)
    model.train()
    return model


@dataclass
class Timed:
    """A callable to time; ``setup`` (untimed) runs before each call."""

    fn: Callable[[], object]
    setup: Callable[[], object] | None = None


def time_interleaved(fns: Mapping[str, Timed | Callable[[], object]], repeats: int,
                     warmup: int = 3) -> dict[str, list[float]]:
    """Seconds of each call of every ``fns`` entry: ``warmup`` untimed calls of each, then
    ``repeats`` rounds in which each is called once, in order (interleaved, so drift and
    another process's load hit every entry alike)."""
    if repeats < 1 or warmup < 0:
        raise ValueError(f"repeats must be >= 1 and warmup >= 0, got {repeats} and {warmup}")
    items = {k: v if isinstance(v, Timed) else Timed(v) for k, v in fns.items()}

    def once(t: Timed) -> float:
        if t.setup is not None:
            t.setup()
        start = time.perf_counter()
        t.fn()
        return time.perf_counter() - start

    for t in items.values():
        for _ in range(warmup):
            once(t)
    times: dict[str, list[float]] = {k: [] for k in items}
    for _ in range(repeats):
        for k, t in items.items():
            times[k].append(once(t))
    return times


def median_ms(times: Iterable[float]) -> float:
    return 1e3 * statistics.median(times)


def env_line() -> str:
    """The machine of a report: CPU model, torch version and CPU capability, threads, CPUs."""
    from lossbench.training.envinfo import cpu_model

    return (f"{cpu_model()}, torch {torch.__version__} (CPU capability "
            f"{torch.backends.cpu.get_cpu_capability()}), {torch.get_num_threads()} threads, "
            f"{os.cpu_count()} CPUs")


def set_threads(n: int | None) -> None:
    """``torch.set_num_threads(n)`` when ``n`` is given; torch's default otherwise."""
    if n is not None:
        if n < 1:
            raise ValueError(f"--threads must be >= 1, got {n}")
        torch.set_num_threads(n)


def bench_cls_loss(n_anchors: int, num_classes: int, batch: int, repeats: int, warmup: int = 3) -> dict:
    """Milliseconds (median) of each classification loss alone, forward + backward."""
    from mmdet.models.losses import FocalLoss

    g = torch.Generator().manual_seed(0)
    logits = torch.randn(batch * n_anchors, num_classes, generator=g, requires_grad=True)
    labels = torch.full((batch * n_anchors,), num_classes)
    labels[torch.randperm(batch * n_anchors, generator=g)[: batch * 50]] = 0
    sm = torch.randn(batch, n_anchors, num_classes + 1, generator=g, requires_grad=True)
    lab_b = labels.reshape(batch, n_anchors)
    stock = FocalLoss(use_sigmoid=True, gamma=2.0, alpha=0.25, reduction="sum")

    def full_sort_mining(x, y, ratio=3):
        out = []
        for i in range(x.shape[0]):
            ce = torch.nn.functional.cross_entropy(x[i], y[i], reduction="none")
            neg = y[i] == num_classes
            k = min(int(ratio * int((~neg).sum())), int(neg.sum()))
            order = torch.sort(torch.where(neg, ce.detach(), -torch.inf), descending=True).indices
            keep = ~neg
            keep[order[:k]] = True
            out.append(ce * keep)
        return torch.stack(out)

    losses = {
        "focal (lossbench)": lambda: focal_loss(logits, labels, 2.0, 0.25).sum(),
        "focal (mmdet FocalLoss)": lambda: stock(logits, labels),
        "ohem top-k (lossbench)": lambda: torch.stack(
            [hard_negative_ce(sm[i], lab_b[i], 3) for i in range(batch)]).sum(),
        "ohem full sort (reference)": lambda: full_sort_mining(sm, lab_b).sum(),
    }
    times = time_interleaved({k: (lambda f=f: f().backward()) for k, f in losses.items()}, repeats, warmup)
    return {k: round(median_ms(v), 3) for k, v in times.items()}


def cls_loss_anchors(size: int) -> int:
    """Anchors of a ``size`` px image as the cls-loss benchmark counts them (P3-P5, plus 18)."""
    return 9 * sum((size // s) ** 2 for s in (8, 16, 32)) + 9 * 2


def main(argv=None) -> int:
    import bench_step  # here: bench_step imports this module

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default=str(CONFIG))
    p.add_argument("--batch", type=int, default=None, help="images per step (default: the config's)")
    p.add_argument("--size", type=int, default=128, help="image size of the cls-loss anchors (px)")
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    p.add_argument("--json", help="also write the results here")
    a = p.parse_args(argv)
    set_threads(a.threads)
    step = bench_step.breakdown(Path(a.config), batch=a.batch, repeats=a.repeats, warmup=a.warmup)
    n_anchors = cls_loss_anchors(a.size)
    cls = bench_cls_loss(n_anchors, 8, a.batch or 8, a.repeats, a.warmup)
    print(f"# {env_line()}\n")
    print("\n".join(bench_step.markdown(step)))
    print(f"\nclassification loss alone, forward+backward, {a.batch or 8} x {n_anchors} anchors (ms):")
    for k, v in cls.items():
        print(f"  {k:<28} {v:8.3f}")
    if a.json:
        Path(a.json).write_text(json.dumps({"train_step": step, "cls_loss_ms": cls, "env": env_line()},
                                           indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
