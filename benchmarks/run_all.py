"""`make bench`: every speed measurement of the project, in one process, into reports/bench.md.

1. train-step time of each family vs MMDetection's stock RetinaHead + FocalLoss
   (same backbone, batch, anchors) and the goals focal <= 1.05x, sse <= 1.05x,
   ohem <= 1.10x of stock;
2. the classification loss alone (focal vs mmdet's FocalLoss; OHEM top-k vs a
   full sort);
3. data-loader throughput of the synth profile's training pipeline;
4. `lossbench synth` images/s at 256 px;
5. `dvc repro report` no-op time (goal <= 10 s), on the smoke study in a temporary
   copy of the repository.

    python benchmarks/run_all.py [--out reports/bench.md] [--repeats 20]
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_heads  # noqa: E402
import bench_synth  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
GOALS = {"focal": 1.05, "sse": 1.05, "ohem": 1.10}


def loader_throughput(tmp: Path, batches: int = 30) -> float:
    """Images/s of the synth profile's training dataloader (decode, augment, collate)."""
    from mmengine.runner import Runner

    from lossbench.data.prepare import prepare
    from lossbench.data.synth import SynthParams, generate
    from lossbench.training.config import load_config

    root, ann = tmp / "raw", tmp / "prepared"
    generate(root, seed=0, n_train=256, n_val=8, n_test=8,
             params=SynthParams(image_size=128, objects=(1, 6), object_size=(12, 64)),
             anchor_config=None, log=lambda *a, **k: None)
    prepare("synth", root, ann, log=lambda *a, **k: None)
    cfg = load_config(REPO / "configs/synth/retinanet_r18n_fpn_synth.py", data_root=root,
                      ann_dir=ann, seed=0)
    loader = Runner.build_dataloader(cfg.train_dataloader, seed=0)
    it = iter(loader)
    next(it)
    t = time.perf_counter()
    n = 0
    for _ in range(batches):
        n += len(next(it)["inputs"])
    return n / (time.perf_counter() - t)


def dvc_noop_seconds(tmp: Path) -> float:
    """Seconds of a second `dvc repro report` on an up-to-date smoke study (the imbalance
    sweep, which trains from the synth profile's selection, is not part of it)."""
    from lossbench.workspace import SMOKE_PARAMS, copy_repo, dvc, set_params

    repo = copy_repo(tmp / "repo")
    set_params(repo, **SMOKE_PARAMS)
    first = dvc(repo, "repro", "report")
    if first.returncode != 0:
        raise RuntimeError(f"smoke pipeline failed: {(first.stdout + first.stderr)[-2000:]}")
    t = time.perf_counter()
    out = dvc(repo, "repro", "report")
    secs = time.perf_counter() - t
    if out.returncode != 0 or re.search(r"Running stage", out.stdout):
        raise RuntimeError("the second dvc repro failed or ran a stage; not a no-op")
    return secs


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(REPO / "reports" / "bench.md"))
    ap.add_argument("--repeats", type=int, default=20)
    a = ap.parse_args(argv)
    cfg = REPO / "configs/synth/retinanet_r18n_fpn_synth.py"
    step = bench_heads.bench_train_step(cfg, 8, 128, a.repeats)
    n_anchors = 9 * sum((128 // s) ** 2 for s in (8, 16, 32)) + 9 * 2
    cls = bench_heads.bench_cls_loss(n_anchors, 8, 8, a.repeats)
    with tempfile.TemporaryDirectory(prefix=".bench-", dir=REPO / "data" if (REPO / "data").is_dir()
                                     else None) as tmp:
        loader = loader_throughput(Path(tmp) / "loader")
        noop = dvc_noop_seconds(Path(tmp))
    (REPO / "data").mkdir(exist_ok=True)
    synth256 = bench_synth.bench(256, 400, os.cpu_count() or 1, None, str(REPO / "data"))

    from lossbench.training.envinfo import cpu_model

    env = (f"{cpu_model()}, torch CPU capability {torch.backends.cpu.get_cpu_capability()}, "
           f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs")
    lines = ["# Benchmarks", "", f"Written by `make bench` ({env}). Medians of {a.repeats} "
             "interleaved repeats; one process.", "",
             "## Train step vs MMDetection's stock RetinaHead + FocalLoss",
             "", "Synth profile model (narrow ResNet-18 + FPN 64), batch 8 x 128 px, AdamW step "
             "included.", "", "| head | ms / step | ratio to stock | goal | met |",
             "|---|---|---|---|---|"]
    for k, v in step.items():
        goal = GOALS.get(k)
        met = "" if goal is None else ("yes" if v["ratio_to_stock"] <= goal else "**no**")
        lines.append(f"| {k} | {1e3 * v['median_s']:.1f} | {v['ratio_to_stock']:.3f} | "
                     f"{'' if goal is None else f'<= {goal:.2f}'} | {met} |")
    lines += ["", f"## Classification loss alone (forward + backward, 8 x {n_anchors} anchors)", "",
              "| loss | ms |", "|---|---|"] + [f"| {k} | {v:.3f} |" for k, v in cls.items()]
    lines += ["", "## Data and pipeline", "", "| what | value | goal |", "|---|---|---|",
              f"| synth training dataloader (decode + augment + collate) | {loader:.0f} images/s | |",
              f"| `lossbench synth` at 256 px, {os.cpu_count()} workers | {synth256:.0f} images/s | >= 200 |",
              f"| `dvc repro report` with nothing to do (smoke study) | {noop:.1f} s | <= 10 s |", ""]
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
