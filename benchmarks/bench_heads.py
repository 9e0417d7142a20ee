"""Train-step time of each family against MMDetection's stock RetinaHead + FocalLoss.

Same backbone, neck, batch and anchors; only the head class and its loss differ.
All models are timed in one process, interleaved, after a warm-up; the median
of the repeats is reported with the ratio to stock. Also times the
classification loss alone (focal vs mmdet's FocalLoss; OHEM's per-image top-k
vs a full sort).

    python benchmarks/bench_heads.py [--config CFG] [--repeats 20] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import time
from pathlib import Path

import torch
from mmengine.config import Config
from mmengine.structures import InstanceData

import lossbench.models.registry  # noqa: F401
from lossbench.models.losses.functional import focal_loss, hard_negative_ce

REPO = Path(__file__).resolve().parents[1]
FAMILIES = {
    "focal": dict(type="focal", gamma=2.0, alpha=0.25),
    "ohem": dict(type="ohem", neg_pos_ratio=3),
    "sse": dict(type="sse", lambda_noobj=0.5),
}


def build(cfg_path: Path, imbalance: dict | None):
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules

    register_all_modules()
    cfg = Config.fromfile(str(cfg_path))
    head = cfg.model.bbox_head
    if imbalance is None:  # stock RetinaNet head
        head.type = "RetinaHead"
        head.pop("imbalance")
        head.pop("prior_prob")
        head.loss_cls = dict(type="FocalLoss", use_sigmoid=True, gamma=2.0, alpha=0.25,
                             loss_weight=1.0)
    else:
        head.imbalance = imbalance
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    logging.getLogger("mmengine").setLevel(logging.WARNING)
    model.init_weights()
    model.train()
    return model


def make_batch(n: int, size: int, num_classes: int):
    from mmdet.structures import DetDataSample

    g = torch.Generator().manual_seed(0)
    imgs = torch.randn(n, 3, size, size, generator=g)
    samples = []
    for _ in range(n):
        k = 4
        xy = torch.rand(k, 2, generator=g) * size * 0.6
        wh = 12 + torch.rand(k, 2, generator=g) * size * 0.35
        s = DetDataSample(metainfo=dict(img_shape=(size, size), pad_shape=(size, size),
                                        batch_input_shape=(size, size), scale_factor=(1.0, 1.0)))
        s.gt_instances = InstanceData(bboxes=torch.cat([xy, (xy + wh).clamp(max=size)], 1),
                                      labels=torch.randint(0, num_classes, (k,), generator=g))
        samples.append(s)
    return imgs, samples


def time_step(model, opt, imgs, samples) -> float:
    t = time.perf_counter()
    loss, _ = model.parse_losses(model.loss(imgs, samples))
    opt.zero_grad()
    loss.backward()
    opt.step()
    return time.perf_counter() - t


def bench_train_step(cfg_path: Path, batch: int, size: int, repeats: int) -> dict:
    num_classes = Config.fromfile(str(cfg_path)).model.bbox_head.num_classes
    models = {"stock": build(cfg_path, None)} | {f: build(cfg_path, imb) for f, imb in FAMILIES.items()}
    opts = {k: torch.optim.AdamW(m.parameters(), lr=1e-4) for k, m in models.items()}
    imgs, samples = make_batch(batch, size, num_classes)
    times = {k: [] for k in models}
    for k in models:  # warm-up
        for _ in range(3):
            time_step(models[k], opts[k], imgs, samples)
    for _ in range(repeats):
        for k in models:  # interleaved, so drift hits every model alike
            times[k].append(time_step(models[k], opts[k], imgs, samples))
    med = {k: statistics.median(v) for k, v in times.items()}
    return {k: {"median_s": round(v, 5), "ratio_to_stock": round(v / med["stock"], 3)}
            for k, v in med.items()}


def bench_cls_loss(n_anchors: int, num_classes: int, batch: int, repeats: int) -> dict:
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

    fns = {
        "focal (lossbench)": lambda: focal_loss(logits, labels, 2.0, 0.25).sum(),
        "focal (mmdet FocalLoss)": lambda: stock(logits, labels),
        "ohem top-k (lossbench)": lambda: torch.stack(
            [hard_negative_ce(sm[i], lab_b[i], 3) for i in range(batch)]).sum(),
        "ohem full sort (reference)": lambda: full_sort_mining(sm, lab_b).sum(),
    }
    res = {}
    for name, fn in fns.items():
        for _ in range(3):
            fn().backward()
        ts = []
        for _ in range(repeats):
            t = time.perf_counter()
            fn().backward()
            ts.append(time.perf_counter() - t)
        res[name] = round(statistics.median(ts) * 1e3, 3)
    return res


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default=str(REPO / "configs/synth/retinanet_r18n_fpn_synth.py"))
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--json", help="also write the results here")
    a = p.parse_args(argv)
    step = bench_train_step(Path(a.config), a.batch, a.size, a.repeats)
    n_anchors = 9 * sum((a.size // s) ** 2 for s in (8, 16, 32)) + 9 * 2
    cls = bench_cls_loss(n_anchors, 8, a.batch, a.repeats)
    print(f"train step, batch {a.batch} x {a.size} px, {torch.get_num_threads()} threads "
          f"(median of {a.repeats}):")
    for k, v in step.items():
        print(f"  {k:<6} {1e3 * v['median_s']:8.1f} ms   x{v['ratio_to_stock']:.3f} of stock")
    print(f"classification loss alone, forward+backward, {a.batch} x {n_anchors} anchors (ms):")
    for k, v in cls.items():
        print(f"  {k:<28} {v:8.3f}")
    if a.json:
        Path(a.json).write_text(json.dumps({"train_step": step, "cls_loss_ms": cls,
                                            "batch": a.batch, "size": a.size,
                                            "threads": torch.get_num_threads()}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
