"""`make bench`: every speed measurement of the project, in one process, into reports/bench.md.

1. the synth profile's train step (its config: batch, image size, AdamW, clip_grad,
   channels_last) for MMDetection's stock RetinaHead + FocalLoss and every family of
   ``lossbench.families.FAMILY_ORDER``: the step with its ratio to stock and the goals
   focal <= 1.05x, sse <= 1.05x, ohem <= 1.10x of stock, and its parts (data, network
   forward + backward, loss + assignment, optimizer step); channels_last against
   contiguous parameters and fused / foreach / single-tensor AdamW (bench_step.py);
2. the classification loss alone (focal vs mmdet's FocalLoss; OHEM top-k vs a
   full sort);
3. data-loader throughput of the synth profile's training pipeline;
4. `lossbench synth` images/s at 256 px;
5. `dvc repro report` no-op time (goal <= 10 s), on the smoke study in a temporary
   copy of the repository.

    python benchmarks/run_all.py [--out reports/bench.md] [--repeats 20] [--warmup 3] [--threads N]
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_heads  # noqa: E402
import bench_step  # noqa: E402
import bench_synth  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
GOALS = {"focal": 1.05, "sse": 1.05, "ohem": 1.10}


def loader_throughput(tmp: Path, batches: int = 30) -> float:
    """Images/s of the synth profile's training dataloader (decode, augment, collate)."""
    from lossbench.data.prepare import prepare
    from lossbench.data.synth import SynthParams, generate
    from lossbench.training.config import load_config

    root, ann = tmp / "raw", tmp / "prepared"
    generate(root, seed=0, n_train=256, n_val=8, n_test=8,
             params=SynthParams(image_size=128, objects=(1, 6), object_size=(12, 64)),
             anchor_config=None, log=lambda *a, **k: None)
    prepare("synth", root, ann, log=lambda *a, **k: None)
    it = iter(bench_step.build_train_loader(load_config(bench_heads.CONFIG, data_root=root, ann_dir=ann, seed=0)))
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
    ap.add_argument("--repeats", type=int, default=20, help="timed rounds of each measurement (median)")
    ap.add_argument("--warmup", type=int, default=3, help="untimed rounds first")
    ap.add_argument("--threads", type=int, default=None,
                    help="torch.set_num_threads for every measurement (default: torch's)")
    a = ap.parse_args(argv)
    bench_heads.set_threads(a.threads)
    step = bench_step.breakdown(bench_heads.CONFIG, repeats=a.repeats, warmup=a.warmup)
    n_anchors = bench_heads.cls_loss_anchors(128)
    cls = bench_heads.bench_cls_loss(n_anchors, 8, 8, a.repeats, a.warmup)
    with tempfile.TemporaryDirectory(prefix=".bench-", dir=REPO / "data" if (REPO / "data").is_dir()
                                     else None) as tmp:
        loader = loader_throughput(Path(tmp) / "loader")
        noop = dvc_noop_seconds(Path(tmp))
    (REPO / "data").mkdir(exist_ok=True)
    synth256 = bench_synth.bench(256, 400, os.cpu_count() or 1, None, str(REPO / "data"))

    lines = ["# Benchmarks", "", f"Written by `make bench` ({bench_heads.env_line()}). Medians of {a.repeats} "
             f"interleaved repeats after {a.warmup} warm-up rounds; one process.", ""]
    lines += bench_step.markdown(step, GOALS)
    lines += [f"## Classification loss alone (forward + backward, 8 x {n_anchors} anchors)", "",
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
