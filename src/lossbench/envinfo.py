"""Print the versions of the stack, the device and the git revision.

The same record is written beside every run (``env.json``) so a result can be
traced to the software and hardware that produced it.
"""

from __future__ import annotations

import argparse
import importlib.metadata as md
import json
import platform
import subprocess
import sys
from pathlib import Path

PACKAGES = ("torch", "mmcv", "mmengine", "mmdet", "numpy", "pycocotools", "dvc", "dvclive",
            "pandas", "seaborn")


def _version(dist: str) -> str | None:
    try:
        return md.version(dist)
    except md.PackageNotFoundError:
        return None


def mmcv_ops_status() -> tuple[bool, str]:
    """Whether mmcv's compiled ops load: run ``mmcv.ops.nms`` on two boxes.

    Returns ``(ok, detail)``; ``ok`` is True only if NMS returns the expected
    result (the lower-scored of two identical boxes suppressed).
    """
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


def git_revision(cwd: str | Path | None = None) -> str | None:
    """``git describe``-style revision of the working tree (``-dirty`` if modified)."""
    try:
        out = subprocess.run(["git", "describe", "--always", "--dirty", "--abbrev=12"],
                             cwd=cwd, capture_output=True, text=True, timeout=10)
        return out.stdout.strip() or None if out.returncode == 0 else None
    except (OSError, subprocess.TimeoutExpired):
        return None


def device_record() -> dict:
    import torch

    rec = {"cuda_available": torch.cuda.is_available(), "cpu": platform.processor() or
           platform.machine(), "cpu_threads": torch.get_num_threads()}
    if torch.cuda.is_available():
        rec.update(device="cuda", gpu=torch.cuda.get_device_name(0),
                   gpu_count=torch.cuda.device_count(), cuda=torch.version.cuda)
    else:
        rec["device"] = "cpu"
    return rec


def environment_record(check_ops: bool = True) -> dict:
    """Versions, device and git revision as a JSON-able dict."""
    from lossbench import __version__

    rec = {
        "lossbench": __version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "packages": {p: _version(p) for p in PACKAGES},
        "git_revision": git_revision(),
        **device_record(),
    }
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
        print(f"lossbench    {rec['lossbench']}")
        print(f"python       {rec['python']}  ({rec['platform']})")
        for name, ver in rec["packages"].items():
            extra = ""
            if name == "mmcv":
                ops = rec["mmcv_ops"]
                extra = f"  compiled ops: {'loaded' if ops['loaded'] else 'NOT loaded'} ({ops['detail']})"
            print(f"{name:<12} {ver or 'not installed'}{extra}")
        dev = rec["device"] + (f" ({rec['gpu']} x{rec['gpu_count']}, CUDA {rec['cuda']})"
                               if rec["device"] == "cuda" else f" ({rec['cpu_threads']} threads)")
        print(f"device       {dev}")
        print(f"git          {rec['git_revision'] or 'unknown'}")
    return 0 if rec["mmcv_ops"]["loaded"] else 1
