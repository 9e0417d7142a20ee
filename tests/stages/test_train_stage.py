"""The train stage: determinism, kill -9 and resume (moved repository, damaged checkpoints,
evaluation-only reruns), NaN guard, device pinning order, run records."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]
CONFIG = REPO / "configs/smoke/retinanet_r18n_fpn_smoke.py"


def train_cmd(data, out, *extra, max_iters=8):
    return [sys.executable, "-m", "lossbench", "train", "--config", str(CONFIG), "--family", "ohem",
            "--neg-pos-ratio", "3", "--seed", "0", "--data-root", str(data["root"]),
            "--ann-dir", str(data["ann_dir"]), "--out", str(out),
            "--cfg-options", f"train_cfg.max_iters={max_iters}", "default_hooks.checkpoint.interval=2",
            "default_hooks.logger.interval=1", *extra]


def accuracy(out: Path) -> dict:
    rec = json.loads((out / "metrics.json").read_text())
    return {"metrics": rec["metrics"], "final": rec["final"], "iters": rec["iters"]}


@pytest.fixture(scope="module")
def reference(synth_prepared, tmp_path_factory):
    out = tmp_path_factory.mktemp("ref") / "run"
    subprocess.run(train_cmd(synth_prepared, out), check=True, capture_output=True, cwd=REPO)
    return out


def test_run_writes_its_records(reference, synth_prepared):
    rec = json.loads((reference / "metrics.json").read_text())
    assert rec["family"] == "ohem" and rec["imbalance"] == {"type": "ohem", "neg_pos_ratio": 3.0}
    assert rec["iters"] == 8 and rec["resumed_from_iter"] == 0
    # the smoke/synth profile scores val and test with VOC mAP@0.5 alone
    assert set(rec["metrics"]) == {"val", "test"}
    assert set(rec["metrics"]["val"]) == set(rec["metrics"]["test"]) == {"mAP50"}
    assert rec["role"] == "grid" and rec["setting"] == {"neg_pos_ratio": 3.0}
    # val every 2 iterations (the smoke config: half of its 4); the last one is the val metric
    assert [v["iter"] for v in rec["val_curve"]] == [2, 4, 6, 8]
    assert rec["val_curve"][-1]["mAP50"] == rec["metrics"]["val"]["mAP50"]
    assert rec["clip"]["steps"] == 8 and 0.0 <= rec["clip"]["clipped_fraction"] <= 1.0
    assert rec["records"] == "test_records.npz" and (reference / "test_records.npz").is_file()
    assert {"loss_cls", "loss_bbox", "diag_share_pos", "diag_pos_per_img"} <= set(rec["final"])
    assert rec["timing"]["train_images_per_s"] > 0
    env = json.loads((reference / "env.json").read_text())
    assert env["packages"]["mmdet"] == "3.3.0" and env["CUDA available"] is False
    # the resolved config is the work dir's (MMEngine writes it), not the run folder's; the run
    # records its digest and data paths, and --print-config shows the same config from the code
    assert not (reference / "config.py").exists()
    assert "neg_pos_ratio=3.0" in (reference / "work" / CONFIG.name).read_text()
    assert rec["data"] == {"data_root": str(synth_prepared["root"]), "ann_dir": str(synth_prepared["ann_dir"])}
    shown = subprocess.run(train_cmd(synth_prepared, reference, "--print-config"), check=True,
                           capture_output=True, text=True, cwd=REPO).stdout
    assert "neg_pos_ratio=3.0" in shown and "type='RunDVCLiveVisBackend'" in shown
    assert shown.rstrip().endswith(f"# config_digest: {rec['config_digest']}")
    params = (reference / "dvclive" / "params.yaml").read_text()
    assert f"config_digest: {rec['config_digest']}" in params and "run: " in params
    assert "data_root" not in params  # the run's identity, not its config
    # DVCLive curves, one row per logged iteration
    tsv = reference / "dvclive" / "plots" / "metrics" / "loss_cls.tsv"
    assert len(tsv.read_text().strip().splitlines()) == 1 + 8


def test_same_seed_same_metrics(reference, synth_prepared, tmp_path):
    out = tmp_path / "again"
    subprocess.run(train_cmd(synth_prepared, out), check=True, capture_output=True, cwd=REPO)
    assert accuracy(out) == accuracy(reference)


def test_killed_run_resumes_and_matches(reference, synth_prepared, tmp_path):
    out = tmp_path / "killed"
    # mmengine writes `last_checkpoint` only once a checkpoint is complete
    killed_at = kill_after_checkpoint(train_cmd(synth_prepared, out), out / "work")
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


def test_finished_run_run_again_is_evaluated_not_retrained(reference, synth_prepared, tmp_path):
    """A finished run run again with nothing changed (its metrics lost, `dvc repro --force`)
    is evaluated from its final checkpoint: no training, same metrics, curves whole."""
    out = tmp_path / "again"
    shutil.copytree(reference, out)
    (out / "metrics.json").unlink()
    subprocess.run(train_cmd(synth_prepared, out), check=True, capture_output=True, cwd=REPO)
    rec = json.loads((out / "metrics.json").read_text())
    assert rec["resumed_from_iter"] == 8 and rec["timing"]["train_images_per_s"] is None
    assert accuracy(out) == accuracy(reference)
    tsv = out / "dvclive" / "plots" / "metrics" / "loss_cls.tsv"
    assert len(tsv.read_text().strip().splitlines()) == 1 + 8


def test_checkpoints_are_tied_to_code_and_annotations(tmp_path):
    from mmengine.config import Config

    from lossbench.training.resume import code_digest, code_files, fingerprint

    # a package whose train stage imports a loss; the report is not training code
    pkg = tmp_path / "src" / "lossbench"
    files = {"__init__.py": "", "stages/__init__.py": "",
             "stages/train.py": "from lossbench.models.losses import functional\n",
             "models/__init__.py": "", "models/losses/__init__.py": "", "models/losses/functional.py": "# loss\n",
             "report/__init__.py": "", "report/figures.py": "# figures\n"}
    for rel, text in files.items():
        (pkg / rel).parent.mkdir(parents=True, exist_ok=True)
        (pkg / rel).write_text(text)
    assert {p.relative_to(pkg).as_posix() for p in code_files(pkg)} == {
        "__init__.py", "stages/__init__.py", "stages/train.py", "models/__init__.py",
        "models/losses/__init__.py", "models/losses/functional.py"}
    before = code_digest(pkg)
    (pkg / "report/figures.py").write_text("# not training code\n")
    assert code_digest(pkg) == before
    (pkg / "models/losses/functional.py").write_text("# changed loss\n")
    assert code_digest(pkg) != before

    ann = tmp_path / "train.json"
    ann.write_text('{"images": []}')
    cfg = Config(dict(train_dataloader=dict(dataset=dict(ann_file=str(ann))), lr=0.1))
    f1 = fingerprint(cfg)
    ann.write_text('{"images": [1]}')  # same path, other annotations
    assert fingerprint(cfg) != f1


def test_fingerprint_does_not_depend_on_where_the_repository_is(tmp_path):
    from mmengine.config import Config

    from lossbench.training.resume import fingerprint

    def cfg_at(root: Path) -> Config:
        (root / "ann").mkdir(parents=True)
        (root / "ann" / "train.json").write_text('{"images": [7]}')
        return Config(dict(work_dir=str(root / "work"), lr=0.1, train_dataloader=dict(
            dataset=dict(data_root=str(root / "raw"), ann_file=str(root / "ann" / "train.json")))))

    here, there = cfg_at(tmp_path / "a"), cfg_at(tmp_path / "elsewhere" / "b")
    assert fingerprint(here) == fingerprint(there)
    there.lr = 0.2
    assert fingerprint(here) != fingerprint(there)


def kill_after_checkpoint(cmd, work: Path, at: tuple[str, ...] = ("iter_2.pth", "iter_4.pth")) -> int:
    """Start ``cmd``, kill -9 it once ``last_checkpoint`` names one of ``at``; the iteration."""
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    last, deadline = work / "last_checkpoint", time.time() + 120
    try:
        while time.time() < deadline and proc.poll() is None:
            if last.exists() and last.read_text().strip().endswith(at):
                os.kill(proc.pid, signal.SIGKILL)
                return int(last.read_text().strip().rsplit("_", 1)[1].split(".")[0])
            time.sleep(0.01)
    finally:
        proc.wait()
    raise AssertionError("the run finished before it could be killed")


def test_moved_repository_resumes(reference, synth_prepared, tmp_path):
    """Data, run folder and work dir all move (a clone elsewhere, or a repository copied to
    another filesystem): the run still resumes and matches."""
    data = {k: tmp_path / "a" / "data" / k for k in ("root", "ann_dir")}
    for k in data:
        shutil.copytree(synth_prepared[k], data[k])
    out = tmp_path / "a" / "run"
    killed_at = kill_after_checkpoint(train_cmd(data, out), out / "work")
    shutil.move(tmp_path / "a", tmp_path / "b")
    moved = {k: tmp_path / "b" / "data" / k for k in data}
    subprocess.run(train_cmd(moved, tmp_path / "b" / "run"), check=True, capture_output=True, cwd=REPO)
    rec = json.loads((tmp_path / "b" / "run" / "metrics.json").read_text())
    assert rec["resumed_from_iter"] >= killed_at >= 2
    assert accuracy(tmp_path / "b" / "run") == accuracy(reference)


@pytest.mark.parametrize("damage", ["delete", "truncate"])
def test_damaged_newest_checkpoint_falls_back(reference, synth_prepared, tmp_path, damage):
    """kill -9 or a full disk while a checkpoint is written: the previous one is kept
    (two are), the damaged one is never trusted, the run resumes from the one before."""
    out = tmp_path / "run"
    kill_after_checkpoint(train_cmd(synth_prepared, out), out / "work", at=("iter_6.pth",))
    newest = out / "work" / "iter_6.pth"
    assert (out / "work" / "iter_4.pth").is_file()
    if damage == "delete":  # mmengine deleted it, or died before writing it
        newest.unlink()
    else:  # the disk filled up half-way
        newest.write_bytes(newest.read_bytes()[: newest.stat().st_size // 2])
    res = subprocess.run(train_cmd(synth_prepared, out), check=True, capture_output=True,
                         text=True, cwd=REPO)
    if damage == "truncate":
        assert "iter_6.pth is incomplete or corrupt: not resumed from" in res.stdout
    rec = json.loads((out / "metrics.json").read_text())
    assert rec["resumed_from_iter"] == 4
    assert accuracy(out) == accuracy(reference)
    tsv = out / "dvclive" / "plots" / "metrics" / "loss_cls.tsv"
    steps = [int(r.split("\t")[0]) for r in tsv.read_text().strip().splitlines()[1:]]
    assert steps == list(range(1, 9))


def test_every_checkpoint_damaged_starts_over(synth_prepared, tmp_path):
    out = tmp_path / "run"
    subprocess.run(train_cmd(synth_prepared, out, max_iters=4), check=True, capture_output=True,
                   cwd=REPO)
    for ckpt in (out / "work").glob("iter_*.pth"):
        ckpt.write_bytes(b"PK\x03\x04 not a checkpoint")
    (out / "metrics.json").unlink()
    subprocess.run(train_cmd(synth_prepared, out, max_iters=4), check=True, capture_output=True,
                   cwd=REPO)
    assert json.loads((out / "metrics.json").read_text())["resumed_from_iter"] == 0


def test_failed_evaluation_is_redone_without_training(synth_prepared, tmp_path, monkeypatch):
    """Evaluation raising after training: the rerun evaluates the final checkpoint only."""
    from mmengine.runner import Runner

    from lossbench.cli import main

    out = tmp_path / "run"
    argv = train_cmd(synth_prepared, out, max_iters=4)[3:]

    def broken_test(self):
        raise RuntimeError("evaluation failed")

    monkeypatch.setattr(Runner, "test", broken_test)
    with pytest.raises(RuntimeError, match="evaluation failed"):
        main(argv)
    assert not (out / "metrics.json").exists()
    monkeypatch.undo()
    assert main(argv) == 0
    rec = json.loads((out / "metrics.json").read_text())
    assert rec["resumed_from_iter"] == 4 and rec["iters"] == 4
    assert rec["timing"]["train_images_per_s"] is None  # not a single training iteration
    assert rec["metrics"]["test"]["mAP50"] is not None
    assert rec["metrics"]["val"]["mAP50"] is not None  # kept from before the failed test


def test_nan_loss_stops_without_metrics(synth_prepared, tmp_path):
    out = tmp_path / "nan"
    res = subprocess.run(
        train_cmd(synth_prepared, out, "model.data_preprocessor.std=[0,0,0]"),
        capture_output=True, text=True, cwd=REPO)
    assert res.returncode == 3
    assert "run 'ohem/ratio3/seed0': loss became non-finite at iteration 1" in res.stderr
    assert not (out / "metrics.json").exists()


def test_bad_knob_stops_before_training(synth_prepared, tmp_path):
    cmd = train_cmd(synth_prepared, tmp_path / "bad")
    cmd[cmd.index("--neg-pos-ratio") + 1] = "-1"
    res = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    assert res.returncode == 2
    assert "--ohem.neg_pos_ratio must be > 0" in res.stderr
    assert not (tmp_path / "bad").exists()


def test_device_is_pinned_before_torch_or_mmengine_load(synth_prepared, tmp_path):
    """With a GPU pool, CUDA_VISIBLE_DEVICES is set before anything can initialise CUDA
    (after which it is ignored): at the moment of pinning neither torch nor mmengine
    is imported. The probe wraps the real pinning function and stops the process."""
    probe = (
        "import json, sys\n"
        "import lossbench.training.devices as d\n"
        "real = d.pin_device_from_pool\n"
        "def spy(*a, **k):\n"
        "    seen = {m: m in sys.modules for m in ('torch', 'mmengine', 'mmdet', 'mmcv')}\n"
        "    print('PROBE ' + json.dumps(seen), flush=True)\n"
        "    raise SystemExit(0)\n"
        "d.pin_device_from_pool = spy\n"
        "from lossbench.cli import main\n"
        "sys.exit(main(sys.argv[1:]))\n")
    cmd = [sys.executable, "-c", probe, *train_cmd(synth_prepared, tmp_path / "r")[3:]]
    res = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO,
                         env={**os.environ, "LOSSBENCH_GPUS": "0"})
    line = [ln for ln in res.stdout.splitlines() if ln.startswith("PROBE ")]
    assert line, res.stdout + res.stderr
    assert json.loads(line[0][6:]) == {"torch": False, "mmengine": False, "mmdet": False,
                                       "mmcv": False}


def test_neg_pos_ratio_all_reaches_the_loss_as_every_negative():
    """`--neg-pos-ratio all` is SSD with every negative (None), never a number."""
    import argparse

    from lossbench.stages.train import add_arguments, imbalance_from_args

    p = argparse.ArgumentParser()
    add_arguments(p)
    base = ["--data-root", "d", "--ann-dir", "a", "--out", "o", "--seed", "0", "--family", "ohem"]
    for spelled in ("all", "ALL", "none"):
        imb, name_parts = imbalance_from_args(p.parse_args([*base, "--neg-pos-ratio", spelled]))
        assert imb == {"type": "ohem", "neg_pos_ratio": None}
    imb, name_parts = imbalance_from_args(p.parse_args([*base, "--neg-pos-ratio", "10"]))
    assert imb["neg_pos_ratio"] == 10.0 and name_parts == {"neg_pos_ratio": "10"}


def test_truncate_curves_keeps_the_checkpoint_step_and_drops_torn_rows(tmp_path):
    from lossbench.training.resume import truncate_curves

    tsv = tmp_path / "plots" / "metrics" / "loss.tsv"
    tsv.parent.mkdir(parents=True)
    # rows 10..40; checkpoint at 20; the last row was cut short by a power loss
    tsv.write_text("step\tloss\n10\t0.9\n20\t0.8\n30\t0.7\n40\t0.")
    truncate_curves(tmp_path, 20)
    assert tsv.read_text() == "step\tloss\n10\t0.9\n20\t0.8\n"
    tsv.write_text("step\tloss\n10\t0.9\n20\t0.8\n3")  # torn inside the step column
    truncate_curves(tmp_path, 30)
    assert tsv.read_text() == "step\tloss\n10\t0.9\n20\t0.8\n"


def test_epoch_based_resume_keeps_every_curve_step_once(synth_prepared, tmp_path):
    """The voc/coco schedules are epoch-based: a run that resumes from an epoch checkpoint
    behind its last logged rows (here: epoch 2's checkpoint lost, so it resumes at epoch 1)
    logs those steps again, and its curves hold every step exactly once."""
    config = tmp_path / "epochs.py"
    config.write_text(
        f"_base_ = {str(CONFIG)!r}\n"
        "train_cfg = dict(_delete_=True, type='EpochBasedTrainLoop', max_epochs=3, val_interval=3)\n"
        "train_dataloader = dict(sampler=dict(type='DefaultSampler', shuffle=True))\n"
        "param_scheduler = [dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=1)]\n"
        "default_hooks = dict(checkpoint=dict(by_epoch=True, interval=1), logger=dict(interval=1))\n")
    out = tmp_path / "run"
    cmd = train_cmd(synth_prepared, out)
    cmd[cmd.index("--config") + 1] = str(config)
    cmd.remove("train_cfg.max_iters=8")
    cmd[cmd.index("default_hooks.checkpoint.interval=2")] = "default_hooks.checkpoint.interval=1"
    kill_after_checkpoint(cmd, out / "work", at=("epoch_2.pth",))
    (out / "work" / "epoch_2.pth").unlink()
    subprocess.run(cmd, check=True, capture_output=True, cwd=REPO)
    rec = json.loads((out / "metrics.json").read_text())
    per_epoch = rec["iters"] // 3  # 16 training images, batch 2
    assert rec["resumed_from_epoch"] == 1 and rec["resumed_from_iter"] == per_epoch
    rows = (out / "dvclive" / "plots" / "metrics" / "loss_cls.tsv").read_text().strip().splitlines()
    assert [int(r.split("\t")[0]) for r in rows[1:]] == list(range(1, rec["iters"] + 1))
