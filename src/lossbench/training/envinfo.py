"""Print the versions of the stack, the machine and the git revision.

The same record is written beside every run (``env.json``): MMEngine's ``collect_env()``
(Python, compiler, PyTorch, CUDA and GPUs, OpenCV, MMEngine), the study's other
packages, the CPU model and the instruction set torch dispatches to (the same seed gives
different digits on different CPUs), the git revision and whether mmcv's ops load.
"""

from __future__ import annotations

import argparse
import importlib.metadata as md
import json
import platform
import subprocess
from pathlib import Path

PACKAGES = ("torch", "mmcv", "mmengine", "mmdet", "numpy", "pycocotools", "dvc", "dvclive", "pandas", "seaborn")


def _version(dist: str) -> str | None:
    try:
        return md.version(dist)
    except md.PackageNotFoundError:
        return None


def mmcv_ops_status() -> tuple[bool, str]:
    """``(ok, detail)``: whether mmcv's compiled ``nms`` loads and drops the lower of two identical boxes."""
    try:
        import torch
        from mmcv.ops import nms

        boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 10.0, 10.0], [20, 20, 30, 30]])
        scores = torch.tensor([0.9, 0.8, 0.7])
        _, keep = nms(boxes, scores, iou_threshold=0.5)
        ok = keep.tolist() == [0, 2]
        return ok, "nms ok" if ok else f"nms returned {keep.tolist()}, expected [0, 2]"
    except Exception as e:  # the point is to report, not to crash
        return False, f"{type(e).__name__}: {e}"


#: keys of MMEngine's ``collect_env()`` left out of the record
DROPPED = ("numpy_random_seed", "PyTorch compiling details")
#: what the pipeline itself writes: rewriting these leaves a tree "clean" (its code and params)
RESULTS = ("runs", "reports", "dvc.lock")


def git_revision(cwd: str | Path | None = None) -> str | None:
    """The commit checked out, ``-dirty`` when a tracked file other than the pipeline's own
    results (``RESULTS``) differs from it: code, configs or params not yet committed."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=10,
                              check=True).stdout.strip()

    try:
        rev = git("rev-parse", "--short=12", "HEAD")
        changed = git("status", "--porcelain", "--untracked-files=no", "--", ".",
                      *(f":(top,exclude){p}" for p in RESULTS))
    except (OSError, subprocess.SubprocessError):
        return None
    return rev + ("-dirty" if changed else "")


def cpu_model(cpuinfo: str | Path = "/proc/cpuinfo") -> str:
    """The CPU's name (``model name`` in /proc/cpuinfo), else ``platform.processor()``."""
    try:
        for line in Path(cpuinfo).read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment_record(check_ops: bool = True) -> dict:
    """MMEngine's ``collect_env()`` plus packages, CPU, git revision and the mmcv ops check."""
    import torch
    from mmengine.utils.dl_utils import collect_env

    from lossbench import __version__

    # less an RNG state and the build's compiler flags (the torch version and CPU capability name the build)
    rec = {k: v for k, v in collect_env().items() if k not in DROPPED}
    rec.update(lossbench=__version__, packages={p: _version(p) for p in PACKAGES},
               git_revision=git_revision(), cpu_model=cpu_model(),
               cpu_capability=torch.backends.cpu.get_cpu_capability(), cpu_threads=torch.get_num_threads())
    if check_ops:
        ok, detail = mmcv_ops_status()
        rec["mmcv_ops"] = {"loaded": ok, "detail": detail}
    return rec


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print the record as JSON")


def run(args: argparse.Namespace) -> int:
    rec = environment_record()
    if args.json:
        print(json.dumps(rec, indent=2))
    else:
        for key, value in rec.items():
            for k, v in value.items() if isinstance(value, dict) else [("", value)]:
                print(f"{key}{'.' if k else ''}{k}: {v}")
    return 0 if rec["mmcv_ops"]["loaded"] else 1
