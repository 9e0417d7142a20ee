"""A throw-away copy of this repository for running the DVC pipeline on the side (the pipeline
test, ``make bench``): its files (tracked, and untracked ones git does not ignore; never ``runs/``,
``reports/`` or ``dvc.lock``) committed in a fresh git repository, with the venv's ``dvc``."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]

#: the smallest study: one knob value per family, one seed, the `smoke` profile
SMOKE_PARAMS: dict[str, Any] = {
    "profile": "smoke", "seeds": [0], "extra_seeds": [1], "calibration": {"iters": 8, "seeds": [0]},
    "focal": {"settings": [{"gamma": 2.0, "alpha": 0.25}, {"gamma": 0.0, "alpha": 0.25}],
              "default": {"gamma": 2.0, "alpha": 0.25}},
    "ohem": {"neg_pos_ratio": [3], "default": 3}, "sse": {"lambda_noobj": [0.5], "default": 0.5}}


def copy_repo(dst: Path, src: Path = REPO) -> Path:
    """Copy ``src``'s files into ``dst`` and commit them in a new git repository."""
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=src,
                           capture_output=True, text=True, check=True).stdout.split("\n")
    for f in filter(None, files):
        if (src / f).is_file() and not f.startswith(("runs/", "reports/", "dvc.lock")):
            (dst / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src / f, dst / f)
    git = ["git", "-c", "user.name=lossbench", "-c", "user.email=lossbench@localhost"]
    for cmd in (["git", "init", "-q"], ["git", "add", "-A"], [*git, "commit", "-qm", "copy"]):
        subprocess.run(cmd, cwd=dst, check=True)
    return dst


def set_params(repo: Path, **changes: Any) -> None:
    """Replace top-level keys of ``repo/params.yaml``."""
    path = repo / "params.yaml"
    params = yaml.safe_load(path.read_text())
    params.update(changes)
    path.write_text(yaml.safe_dump(params, sort_keys=False))


def dvc(repo: Path, *args: str) -> subprocess.CompletedProcess:
    """Run this environment's ``dvc`` in ``repo`` with the environment's scripts on PATH."""
    bindir = Path(sys.executable).parent
    env = dict(os.environ, PATH=f"{bindir}{os.pathsep}{os.environ['PATH']}")
    return subprocess.run([str(bindir / "dvc"), *args], cwd=repo, env=env, capture_output=True, text=True)
