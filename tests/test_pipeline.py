"""The whole DVC pipeline on the `smoke` profile, in a temporary copy of the repository."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from lossbench.workspace import SMOKE_PARAMS, copy_repo, dvc, set_params

# the remedies' grids cut to one setting each, as SMOKE_PARAMS cuts the study's
SMOKE_REMEDIES = {
    "ghm": {"settings": [{"bins": 10, "momentum": 0.75}], "default": {"bins": 10, "momentum": 0.75}},
    "qfl": {"beta": [2.0], "default": 2.0},
    "vfl": {"settings": [{"vfl_gamma": 2.0, "vfl_alpha": 0.75}], "default": {"vfl_gamma": 2.0, "vfl_alpha": 0.75}},
    "ce_prior": {"scaling": ["on"], "default": "on"}}

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

    out = _dvc(repo, "repro", "report")  # the study; the imbalance sweep is not a dependency
    families = ("focal", "ohem", "sse")
    assert sorted(_ran(out)) == sorted([
        "fetch", "prepare", "pretrain", "train_focal@setting0-0", "train_focal@setting1-0", "train_ohem@3-0",
        "train_sse@0.5-0", *(f"train_default@{f}-1" for f in families),
        *(f"train_prior_off@{f}-0" for f in families), *(f"train_calibration@{f}-0" for f in families), "select",
        *(f"best_extra@{f}-1" for f in families), *(f"best_calibration@{f}-0" for f in families), "report"])
    runs = ["focal/gamma2.0_alpha0.25/seed0", "focal/gamma0.0_alpha0.25/seed0", "ohem/ratio3/seed0",
            "sse/lambda0.5/seed0", *(f"{kind}/{f}/seed{s}" for f in families
                                     for kind, s in (("extra/default", 1), ("extra/best", 1), ("prior_off", 0)))]
    for run in runs:
        rec = json.loads((repo / "runs/smoke" / run / "metrics.json").read_text())
        assert rec["iters"] == 4 and rec["profile"] == "smoke" and rec["run"] == run
        assert (repo / "runs/smoke" / run / "test_records.npz").is_file()
    for run in (f"calibration/{kind}/{f}/seed0" for f in families for kind in ("default", "best")):
        rec = json.loads((repo / "runs/smoke" / run / "metrics.json").read_text())  # 2T: twice the schedule
        assert rec["iters"] == 8 and rec["run"] == run and rec["role"] == f"calibration_{run.split('/')[1]}"
    pretrained = json.loads((repo / "runs/smoke/pretrain/metrics.json").read_text())  # smoke: from scratch
    assert pretrained == {"pretrain": None, "backbone_init_cfg": None}
    assert json.loads((repo / "runs/smoke/prior_off/sse/seed0/metrics.json").read_text())["prior_prob"] is None
    selection = json.loads((repo / "runs/smoke/selection.json").read_text())
    assert set(selection["families"]) == set(families)
    report = (repo / "reports/smoke/README.md").read_text()
    assert "missing" not in report.split("## Best setting")[0]
    assert (repo / "reports/smoke/figures/ablation_mAP50.png").is_file()

    # nothing changed: nothing runs
    assert _ran(_dvc(repo, "repro", "report")) == []

    # a grid run's val mAP50 moves (say, retrained on another CPU) without changing a choice:
    # select and the report rerun, no training reads the val means
    def pending(prefixes):
        return {k: v for k, v in json.loads(_dvc(repo, "status", "--json")).items() if k.startswith(prefixes)}

    trainers = ("best_extra", "best_calibration", "train_sweep")
    before = pending(trainers)  # train_sweep never ran on the smoke profile
    assert not [s for s in before if s.startswith(("best_extra", "best_calibration"))]
    metrics = repo / "runs/smoke/ohem/ratio3/seed0/metrics.json"  # the one ohem setting: always chosen
    rec = json.loads(metrics.read_text())
    rec["metrics"]["val"]["mAP50"] += 0.01
    rec["val_curve"][-1]["mAP50"] = rec["metrics"]["val"]["mAP50"]
    metrics.write_text(json.dumps(rec))
    _dvc(repo, "commit", "--force", "train_ohem@3-0")
    assert pending(trainers) == before
    assert {"select", "report"} <= set(pending(("select", "report")))
    assert sorted(_ran(_dvc(repo, "repro", "report"))) == ["report", "select"]

    # one knob value changed: that run, and no other grid run
    set_params(repo, sse={"lambda_noobj": [0.25], "default": 0.25})
    ran = _ran(_dvc(repo, "repro", "report"))
    assert "train_sse@0.25-0" in ran and ran[-1] == "report"
    assert not [s for s in ran if s.startswith(("train_focal", "train_ohem"))], ran

    # the report's figures are DVC plots, the val means DVC metrics (dvc.yaml, top level)
    plots = json.loads(dvc(repo, "plots", "show", "--json").stdout)
    assert any(k.endswith("reports/smoke/figures/ablation_mAP50.png") for k in plots["data"]), plots
    # the only plot missing is the imbalance sweep's, which the smoke study does not run
    assert {e["name"].split("/")[1] for e in plots.get("errors", [])} <= {"sweep"}, plots["errors"]
    shown = json.loads(dvc(repo, "metrics", "show", "--json").stdout)
    means = shown[""]["data"]["runs/smoke/val_means.json"]["data"]
    assert means["families"]["sse"] == {"lambda0.25": pytest.approx(
        json.loads((repo / "runs/smoke/sse/lambda0.25/seed0/metrics.json").read_text())["metrics"]["val"]["mAP50"])}

    # `make remedies`: the four later remedies' grids, their selection, extra seeds and report; the study's stages
    # are current and stay so
    set_params(repo, **SMOKE_REMEDIES)
    ran = _ran(_dvc(repo, "repro", "report_remedies"))
    remedies = ("ghm", "qfl", "vfl", "ce_prior")
    assert sorted(ran) == sorted([
        "remedy_ghm@setting0-0", "remedy_qfl@2.0-0", "remedy_vfl@setting0-0", "remedy_ce_prior@on-0",
        "select_remedies", *(f"remedies_extra@{f}-1" for f in remedies), "report_remedies"]), ran
    assert _ran(_dvc(repo, "repro", "report")) == []
    text = (repo / "reports/smoke_remedies/README.md").read_text()
    rows = (repo / "reports/smoke_remedies/tables/cross_family.csv").read_text().splitlines()[1:]
    # every family's val-best and paper default, one row where they coincide (smoke's short runs tie)
    assert list(dict.fromkeys(r.split(",")[0] for r in rows)) == ["focal", "ohem", "sse", *remedies]
    assert "Chen et al. 2019 (sampling-free), across families" in text
    rec = json.loads((repo / "runs/smoke/extra/best/ce_prior/seed1/metrics.json").read_text())
    assert rec["family"] == "ce_prior" and rec["setting"] == {"scaling": "on"}


def test_killed_stage_resumes_under_dvc_repro_with_whole_curves(tmp_path):
    """kill -9 of a training stage after a checkpoint, then `dvc repro`: the run resumes
    and its curves hold every logged step exactly once (DVC removes non-persistent
    outputs before it runs a stage, which used to take the first part of the curves)."""
    import os
    import signal
    import subprocess
    import sys
    import time

    repo = tmp_path / "repo"
    repo.mkdir()
    copy_repo(repo)
    set_params(repo, **SMOKE_PARAMS)
    cfg = repo / "configs/smoke/retinanet_r18n_fpn_smoke.py"  # 8 iterations, a checkpoint every 2
    cfg.write_text(cfg.read_text() + "train_cfg = dict(max_iters=8, val_interval=8)\n"
                   "default_hooks = dict(checkpoint=dict(interval=2), logger=dict(interval=1))\n")
    _dvc(repo, "repro", "prepare")
    stage = "train_focal@setting0-0"
    bindir = Path(sys.executable).parent
    proc = subprocess.Popen([str(bindir / "dvc"), "repro", stage], cwd=repo, start_new_session=True,
                            env={**os.environ, "PATH": f"{bindir}{os.pathsep}{os.environ['PATH']}"},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    last = repo / "work_dirs/smoke/focal/gamma2.0_alpha0.25/seed0/last_checkpoint"
    deadline, killed = time.time() + 300, False
    while time.time() < deadline and proc.poll() is None:
        if last.exists() and last.read_text().strip().endswith(("iter_4.pth", "iter_6.pth")):
            os.killpg(proc.pid, signal.SIGKILL)
            killed = True
            break
        time.sleep(0.01)
    proc.wait()
    assert killed, "the stage finished before it could be killed"

    assert _ran(_dvc(repo, "repro", stage)) == [stage]
    run = repo / "runs/smoke/focal/gamma2.0_alpha0.25/seed0"
    assert json.loads((run / "metrics.json").read_text())["resumed_from_iter"] >= 4
    for name in ("loss.tsv", "loss_cls.tsv", "lr.tsv"):
        rows = (run / "dvclive/plots/metrics" / name).read_text().strip().splitlines()
        assert [int(r.split("\t")[0]) for r in rows[1:]] == list(range(1, 9)), name


def test_switching_profile_changes_one_line_and_a_failed_run_changes_nothing(tmp_path):
    """`make repro PROFILE=x`: a run that fails (here: VOC cannot be downloaded) leaves
    params.yaml and dvc.lock byte for byte as they were; one that succeeds changes exactly
    the `profile:` line of params.yaml."""
    import subprocess
    import sys

    repo = tmp_path / "repo"
    repo.mkdir()
    copy_repo(repo)
    params = repo / "params.yaml"
    text = params.read_text()
    voc = "    config: configs/voc/retinanet_r50_fpn_voc0712.py\n    dataset: voc0712\n    data: {}\n"
    assert voc in text
    params.write_text(text.replace(voc, voc.replace("data: {}", "data: {retries: 0, mirror: 'http://127.0.0.1:9'}")))
    set_params(repo, **{k: v for k, v in SMOKE_PARAMS.items() if k != "profile"})
    (repo / "dvc.lock").write_text("schema: '2.0'\nstages: {}\n")
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@localhost", "commit", "-qam", "x"],
                   cwd=repo, check=True)
    venv = Path(sys.executable).parent.parent
    make = ["make", "-o", str(venv / ".installed"), f"VENV={venv}", "repro"]
    before = {f: (repo / f).read_bytes() for f in ("params.yaml", "dvc.lock")}

    res = subprocess.run([*make, "PROFILE=voc"], cwd=repo, capture_output=True, text=True)
    assert res.returncode != 0
    assert "params.yaml and dvc.lock are as they were" in res.stdout + res.stderr
    assert {f: (repo / f).read_bytes() for f in before} == before

    res = subprocess.run([*make, "PROFILE=smoke"], cwd=repo, capture_output=True, text=True)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    diff = subprocess.run(["git", "diff", "-U0", "params.yaml"], cwd=repo, capture_output=True,
                          text=True).stdout
    changed = [ln for ln in diff.splitlines() if ln[:1] in "+-" and not ln.startswith(("+++", "---"))]
    assert changed == ["-profile: synth", "+profile: smoke"]  # (the study ran through the queue)
    assert (repo / "reports/smoke/README.md").is_file()
