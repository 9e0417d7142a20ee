"""Speed of ``lossbench synth``: images per second, files included.

Generates N images (JPEG + VOC XML + COCO JSON, no anchor statistics) into a
temporary folder, once in one process and once with one worker per CPU, at
each image size, and prints images/s. The issue asks for >= 200 images/s at
256 px on a 2-core machine.

    python benchmarks/bench_synth.py [--n 1000] [--sizes 256 128] [--workers 0] [--dir DIR]

The images are written to a temporary sub-folder of --dir, removed afterwards.
The default is the checkout's git-ignored ``data/`` folder, where the study's
data goes: file creation speed differs a lot between file systems (on the
2-core dev box, /tmp was up to 10x slower than the checkout), so measure there.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from lossbench.data import synth

DATA = Path(__file__).resolve().parents[1] / "data"  # git-ignored


def bench(size: int, n: int, workers: int, object_size: tuple[int, int] | None, where: str) -> float:
    """Images per second of ``synth.generate`` for ``n`` training images of ``size`` px."""
    params = synth.SynthParams(image_size=size, object_size=object_size)
    with tempfile.TemporaryDirectory(prefix=".bench-synth-", dir=where) as tmp:
        t0 = time.perf_counter()
        synth.generate(Path(tmp) / "out", seed=0, n_train=n, n_val=0, n_test=0, params=params,
                       workers=workers, anchor_config=None, log=lambda s: None)
        return n / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1000, help="images per measurement (default 1000)")
    ap.add_argument("--sizes", type=int, nargs="+", default=[256, 128], help="image sizes, px")
    ap.add_argument("--workers", type=int, default=0, help="parallel run's processes (0 = one per CPU)")
    ap.add_argument("--dir", default=str(DATA), help=f"where to write the images (default {DATA})")
    args = ap.parse_args()
    cpus = os.cpu_count() or 1
    parallel = args.workers or cpus
    os.makedirs(args.dir, exist_ok=True)
    print(f"lossbench synth benchmark: {args.n} images per run, {cpus} CPUs, writing under {os.path.abspath(args.dir)}")
    print(f"{'size':>6} {'objects':>9} {'1 process':>12} {f'{parallel} workers':>12}")
    for size in args.sizes:
        object_size = (16, 64) if size == 128 else None  # the study's small setting
        one = bench(size, args.n, 1, object_size, args.dir)
        par = bench(size, args.n, parallel, object_size, args.dir) if parallel > 1 else one
        osz = synth.SynthParams(image_size=size, object_size=object_size).resolved().object_size
        print(f"{size:>4}px {osz[0]:>4}..{osz[1]:<4} {one:>8.0f} im/s {par:>8.0f} im/s")


if __name__ == "__main__":
    main()
