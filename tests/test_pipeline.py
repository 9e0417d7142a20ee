"""The whole DVC pipeline on the `smoke` profile, in a temporary copy of the repository."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from lossbench.workspace import SMOKE_PARAMS, copy_repo, dvc, set_params

pytestmark = pytest.mark.slow


def _dvc(repo: Path, *args) -> str:
    res = dvc(repo, *args)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return res.stdout + res.stderr


def _ran(out: str) -> list[str]:
    return re.findall(r"Running stage '([^']+)'", out)


def test_smoke_pipeline(tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    copy_repo(repo)
    set_params(repo, **SMOKE_PARAMS)

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
    set_params(repo, sse={"lambda_noobj": [0.25]})
    assert _ran(_dvc(repo, "repro")) == ["train_sse@0.25-0", "report"]

    # curves are DVC plots
    plots = json.loads(_dvc(repo, "plots", "show", "--json"))
    assert not plots.get("errors"), plots.get("errors")
    assert any("sse/lambda0.25/seed0/dvclive/plots/metrics/loss_cls.tsv" in k for k in plots["data"])
