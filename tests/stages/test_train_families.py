"""The families of issue 21 train end to end on the CPU (smoke config, a few iterations): their state
(GHM's bin-count average, ce_prior's measured prior) goes into checkpoints and comes back on resume, and
``lossbench train --cls-weight`` records the weight."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from mmengine.hooks import Hook
from mmengine.runner import Runner

import lossbench.training.hooks  # noqa: F401  (registers the study's hooks, as the train stage does)
from lossbench.training.config import load_config

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]
CONFIG = REPO / "configs/smoke/retinanet_r18n_fpn_smoke.py"
STATE = {"ghm": "bbox_head.loss_cls.ghmc.acc_sum", "ce_prior": "bbox_head.data_prior"}


def _runner(family, data, work_dir, max_iters, resume=False):
    cfg = load_config(CONFIG, data_root=data["root"], ann_dir=data["ann_dir"], seed=0,
                      imbalance=dict(type=family), work_dir=work_dir)
    cfg.model.backbone.init_cfg = None  # from scratch: no pretrained backbone needed
    cfg.train_cfg.max_iters = max_iters
    cfg.train_cfg.val_interval = 100  # no evaluation
    cfg.resume = resume
    cfg.default_hooks.checkpoint.interval = 1
    cfg.default_hooks.logger.interval = 1
    cfg.train_dataloader.batch_size = 2
    return Runner.from_cfg(cfg)


@pytest.mark.parametrize("family", ["ghm", "qfl", "vfl", "ce_prior"])
def test_family_trains_and_resumes_its_state(family, synth_prepared, tmp_path):
    runner = _runner(family, synth_prepared, tmp_path, max_iters=2)
    runner.train()
    hub = runner.message_hub
    for key in ("train/loss_cls", "train/loss_bbox"):
        assert all(math.isfinite(v) for v in hub.get_scalar(key).data[0])
    head = runner.model.bbox_head
    state = torch.load(tmp_path / "iter_2.pth", map_location="cpu", weights_only=False)["state_dict"]
    if family == "ce_prior":
        pi = head.data_prior.item()
        assert 0 < pi < 0.01 and state[STATE[family]].item() == pi
        assert hub.get_scalar("train/diag_prior_pi").current() == pytest.approx(pi)
        # guided scaling: the classification loss is the box loss in value
        assert hub.get_scalar("train/loss_cls").data[0] == pytest.approx(hub.get_scalar("train/loss_bbox").data[0])
    if family == "ghm":
        assert state[STATE[family]].sum() > 0
    resumed = _runner(family, synth_prepared, tmp_path, max_iters=3, resume=True)
    seen = {}

    class Peek(Hook):  # before_train runs after the runner has resumed, before iteration 3
        def before_train(self, runner):
            seen.update({k: v.clone() for k, v in runner.model.state_dict().items() if k in STATE.values()})

    resumed.register_hook(Peek())
    resumed.train()
    assert resumed.iter == 3
    if family in STATE:  # what the checkpoint holds, not a fresh start
        assert torch.equal(seen[STATE[family]], state[STATE[family]])
    if family == "ce_prior":  # not measured again on the resumed run's first batch
        assert resumed.model.bbox_head.data_prior.item() == pi


def test_train_records_the_cls_weight(synth_prepared, tmp_path):
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "lossbench", "train", "--config", str(CONFIG), "--family", "qfl", "--beta", "2.0",
           "--seed", "0", "--data-root", str(synth_prepared["root"]), "--ann-dir", str(synth_prepared["ann_dir"]),
           "--out", str(out), "--cls-weight", "2", "--cfg-options", "train_cfg.max_iters=2",
           "model.backbone.init_cfg=None"]
    subprocess.run(cmd, check=True, capture_output=True, cwd=REPO)
    rec = json.loads((out / "metrics.json").read_text())
    assert rec["cls_weight"] == 2.0 and rec["run"] == "qfl/beta2.0/seed0"
    assert rec["imbalance"] == {"type": "qfl", "beta": 2.0} and rec["setting"] == {"beta": 2.0}
