"""The whole DVC pipeline on the `smoke` profile, in a temporary copy of the repository."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[1]


def _copy_repo(dst: Path) -> None:
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO,
                           capture_output=True, text=True, check=True).stdout.split("\n")
    for f in filter(None, files):
        src = REPO / f
        if src.is_file() and not f.startswith(("runs/", "reports/", "dvc.lock")):
            (dst / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst / f)
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run(["git", "init", "-q"], cwd=dst, check=True)
    subprocess.run(["git", "add", "-A"], cwd=dst, check=True)
    subprocess.run([*git, "commit", "-qm", "copy"], cwd=dst, check=True)


def _set_params(repo: Path, **changes) -> None:
    path = repo / "params.yaml"
    params = yaml.safe_load(path.read_text())
    params.update(changes)
    path.write_text(yaml.safe_dump(params, sort_keys=False))


def _dvc(repo: Path, *args) -> str:
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    res = subprocess.run([str(Path(sys.executable).parent / "dvc"), *args], cwd=repo, env=env,
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return res.stdout + res.stderr


def _ran(out: str) -> list[str]:
    return re.findall(r"Running stage '([^']+)'", out)


def test_smoke_pipeline(tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    _copy_repo(repo)
    _set_params(repo, profile="smoke", seeds=[0], focal={"settings": [{"gamma": 2.0, "alpha": 0.25}]},
                ohem={"neg_pos_ratio": [3]}, sse={"lambda_noobj": [0.5]})

    out = _dvc(repo, "repro")
    assert _ran(out) == ["fetch", "prepare", "train_focal@setting0-0", "train_ohem@3-0",
                         "train_sse@0.5-0", "report"]
    for run in ("focal/gamma2.0_alpha0.25/seed0", "ohem/ratio3/seed0", "sse/lambda0.5/seed0"):
        rec = json.loads((repo / "runs/smoke" / run / "metrics.json").read_text())
        assert rec["iters"] == 4 and rec["profile"] == "smoke"
    report = (repo / "reports/smoke/README.md").read_text()
    assert "missing" not in report.split("## Best setting")[0]
    assert (repo / "reports/smoke/figures/ablation_mAP50.png").is_file()

    # nothing changed: nothing runs
    assert _ran(_dvc(repo, "repro")) == []

    # one knob value changed: exactly that run and the report
    _set_params(repo, sse={"lambda_noobj": [0.25]})
    assert _ran(_dvc(repo, "repro")) == ["train_sse@0.25-0", "report"]

    # curves are DVC plots
    plots = json.loads(_dvc(repo, "plots", "show", "--json"))
    assert not plots.get("errors"), plots.get("errors")
    assert any("sse/lambda0.25/seed0/dvclive/plots/metrics/loss_cls.tsv" in k for k in plots["data"])
