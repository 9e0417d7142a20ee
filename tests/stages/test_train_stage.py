"""The train stage: determinism, kill -9 and resume, NaN guard, run records."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]
CONFIG = REPO / "configs/synth/retinanet_r18n_fpn_ohem_synth.py"


def train_cmd(data, out, *extra, max_iters=8):
    return [sys.executable, "-m", "lossbench", "train", "--config", str(CONFIG), "--family", "ohem",
            "--neg-pos-ratio", "3", "--seed", "0", "--data-root", str(data["root"]),
            "--ann-dir", str(data["ann_dir"]), "--out", str(out), "--max-iters", str(max_iters),
            "--cfg-options", "train_dataloader.batch_size=2", "default_hooks.checkpoint.interval=2",
            "default_hooks.logger.interval=1", *extra]


def accuracy(out: Path) -> dict:
    rec = json.loads((out / "metrics.json").read_text())
    return {"metrics": rec["metrics"], "final": rec["final"], "iters": rec["iters"]}


@pytest.fixture(scope="module")
def reference(synth_prepared, tmp_path_factory):
    out = tmp_path_factory.mktemp("ref") / "run"
    subprocess.run(train_cmd(synth_prepared, out), check=True, capture_output=True, cwd=REPO)
    return out


def test_run_writes_its_records(reference):
    rec = json.loads((reference / "metrics.json").read_text())
    assert rec["family"] == "ohem" and rec["imbalance"] == {"type": "ohem", "neg_pos_ratio": 3.0}
    assert rec["iters"] == 8 and rec["resumed_from_iter"] == 0
    assert set(rec["metrics"]) == {"mAP50", "AP", "AP50", "AP75", "APs", "APm", "APl"}
    assert {"loss_cls", "loss_bbox", "diag_share_pos", "diag_pos_per_img"} <= set(rec["final"])
    assert rec["timing"]["train_images_per_s"] > 0
    env = json.loads((reference / "env.json").read_text())
    assert env["packages"]["mmdet"] == "3.3.0" and env["device"] == "cpu"
    assert "neg_pos_ratio=3.0" in (reference / "config.py").read_text()
    # DVCLive curves, one row per logged iteration
    tsv = reference / "dvclive" / "plots" / "metrics" / "loss_cls.tsv"
    assert len(tsv.read_text().strip().splitlines()) == 1 + 8


def test_same_seed_same_metrics(reference, synth_prepared, tmp_path):
    out = tmp_path / "again"
    subprocess.run(train_cmd(synth_prepared, out), check=True, capture_output=True, cwd=REPO)
    assert accuracy(out) == accuracy(reference)


def test_killed_run_resumes_and_matches(reference, synth_prepared, tmp_path):
    out = tmp_path / "killed"
    proc = subprocess.Popen(train_cmd(synth_prepared, out), cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    # mmengine writes `last_checkpoint` only once a checkpoint is complete
    last = out / "work" / "last_checkpoint"
    deadline = time.time() + 120
    killed_at = None
    while time.time() < deadline and proc.poll() is None:
        if last.exists() and last.read_text().strip().endswith(("iter_2.pth", "iter_4.pth")):
            os.kill(proc.pid, signal.SIGKILL)
            killed_at = int(last.read_text().strip().rsplit("_", 1)[1].split(".")[0])
            break
        time.sleep(0.01)
    proc.wait()
    assert killed_at is not None, "the run finished before it could be killed"
    assert not (out / "metrics.json").exists()

    subprocess.run(train_cmd(synth_prepared, out), check=True, capture_output=True, cwd=REPO)
    rec = json.loads((out / "metrics.json").read_text())
    assert rec["resumed_from_iter"] >= killed_at >= 2
    assert accuracy(out) == accuracy(reference)


def test_changed_config_does_not_resume(reference, synth_prepared, tmp_path):
    out = tmp_path / "changed"
    subprocess.run(train_cmd(synth_prepared, out, max_iters=4), check=True, capture_output=True,
                   cwd=REPO)
    subprocess.run(train_cmd(synth_prepared, out, max_iters=6), check=True, capture_output=True,
                   cwd=REPO)
    assert json.loads((out / "metrics.json").read_text())["resumed_from_iter"] == 0


def test_finished_run_run_again_starts_over(synth_prepared, tmp_path):
    """DVC reruns a finished stage only when something changed (or --force): the final
    checkpoint must not stand in for a new training, and the curves stay whole."""
    out = tmp_path / "again"
    for _ in range(2):
        subprocess.run(train_cmd(synth_prepared, out, max_iters=4), check=True,
                       capture_output=True, cwd=REPO)
    rec = json.loads((out / "metrics.json").read_text())
    assert rec["resumed_from_iter"] == 0 and rec["iters"] == 4
    tsv = out / "dvclive" / "plots" / "metrics" / "loss_cls.tsv"
    assert len(tsv.read_text().strip().splitlines()) == 1 + 4


def test_checkpoints_are_tied_to_code_and_annotations(tmp_path):
    from mmengine.config import Config

    from lossbench.stages.train import code_digest, data_digest, fingerprint

    pkg = tmp_path / "pkg"
    for rel in ("models/losses/functional.py", "config.py", "compat.py", "profiles.py",
                "hooks.py", "stages/train.py", "report/figures.py"):
        (pkg / rel).parent.mkdir(parents=True, exist_ok=True)
        (pkg / rel).write_text(f"# {rel}\n")
    before = code_digest(pkg)
    (pkg / "report/figures.py").write_text("# not training code\n")
    assert code_digest(pkg) == before
    (pkg / "models/losses/functional.py").write_text("# changed loss\n")
    assert code_digest(pkg) != before

    ann = tmp_path / "train.json"
    ann.write_text('{"images": []}')
    cfg = Config(dict(train_dataloader=dict(dataset=dict(ann_file=str(ann))), lr=0.1))
    d1, f1 = data_digest(cfg), fingerprint(cfg)
    ann.write_text('{"images": [1]}')  # same path, other annotations
    assert data_digest(cfg) != d1 and fingerprint(cfg) != f1


def test_nan_loss_stops_without_metrics(synth_prepared, tmp_path):
    out = tmp_path / "nan"
    res = subprocess.run(
        train_cmd(synth_prepared, out, "model.data_preprocessor.std=[0,0,0]"),
        capture_output=True, text=True, cwd=REPO)
    assert res.returncode == 3
    assert "run 'ohem/neg_pos_ratio3/seed0': loss became non-finite at iteration 1" in res.stderr
    assert not (out / "metrics.json").exists()


def test_bad_knob_stops_before_training(synth_prepared, tmp_path):
    cmd = train_cmd(synth_prepared, tmp_path / "bad")
    cmd[cmd.index("--neg-pos-ratio") + 1] = "-1"
    res = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    assert res.returncode == 2
    assert "--ohem.neg_pos_ratio must be > 0" in res.stderr
    assert not (tmp_path / "bad").exists()
