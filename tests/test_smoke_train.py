"""End to end on the CPU: config -> custom_imports -> 2 iterations -> checkpoint -> resume."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from mmengine.runner import Runner

from lossbench.training.config import load_config
from lossbench.training.hooks import ParamDigestHook, param_digest

pytestmark = pytest.mark.slow
CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "smoke"


def _runner(cfg_path, data, work_dir, max_iters, resume=False):
    cfg = load_config(cfg_path, data_root=data["root"], ann_dir=data["ann_dir"], seed=0,
                      imbalance=dict(type="focal", gamma=2.0, alpha=0.25), work_dir=work_dir)
    cfg.train_cfg.max_iters = max_iters
    cfg.resume = resume
    cfg.default_hooks.checkpoint.interval = 1
    cfg.default_hooks.logger.interval = 1
    cfg.train_dataloader.batch_size = 2
    return Runner.from_cfg(cfg)


def test_train_checkpoint_and_resume(synth_prepared, tmp_path):
    cfg_path = CONFIGS / "retinanet_r18n_fpn_smoke.py"
    runner = _runner(cfg_path, synth_prepared, tmp_path, max_iters=2)
    # the head came in through custom_imports, not through an import in this test
    assert type(runner.model.bbox_head).__name__ == "ImbalanceRetinaHead"
    runner.train()
    assert runner.iter == 2
    ckpt = tmp_path / "iter_2.pth"
    assert ckpt.is_file()
    trained = param_digest(runner.model)
    losses = runner.message_hub.get_scalar("train/loss").data[0]
    assert len(losses) == 2 and all(math.isfinite(v) for v in losses)

    # a fresh runner on the same work_dir with resume=True continues from iteration 2,
    # starting from the checkpoint's weights (digest taken by the hook at before_train,
    # i.e. after Runner.train() has resumed)
    resumed = _runner(cfg_path, synth_prepared, tmp_path, max_iters=3, resume=True)
    resumed.register_hook(ParamDigestHook())
    resumed.train()
    assert resumed.iter == 3
    digests = dict(line.split() for line in
                   (tmp_path / "param_digest_rank0.txt").read_text().splitlines())
    assert digests["before"] == trained and digests["after"] != trained
    assert (tmp_path / "iter_3.pth").is_file()
