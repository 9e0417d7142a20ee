"""Data-parallel training: 2 CPU processes (gloo) under torchrun and under a simulated srun.

Both processes must start from and end with the same parameters (DDP averaged
their gradients), the learning rate must be scaled by the total batch, and
only rank 0 may write the run's records and checkpoints.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]
CONFIG = REPO / "configs/smoke/retinanet_r18n_fpn_smoke.py"
MAX_ITERS = 4


def config_with(tmp_path: Path, extra: str) -> Path:
    """The smoke config plus ``extra`` lines (MMEngine inheritance)."""
    path = tmp_path / "config.py"
    path.write_text(f"_base_ = {str(CONFIG)!r}\n{extra}\n")
    return path


def train_args(data, out, launcher, config=CONFIG):
    return ["-m", "lossbench", "train", "--launcher", launcher, "--config", str(config),
            "--family", "focal", "--gamma", "2", "--alpha", "0.25", "--seed", "0",
            "--data-root", str(data["root"]), "--ann-dir", str(data["ann_dir"]),
            "--out", str(out),
            "--cfg-options", f"train_cfg.max_iters={MAX_ITERS}", "train_dataloader.batch_size=2",
            "default_hooks.checkpoint.interval=2", "default_hooks.logger.interval=1"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(launcher: str, args: list[str]) -> list[str]:
    """Run 2 processes; return each one's stdout+stderr."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    if launcher == "pytorch":
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes=1", "--nproc_per_node=2",
               "--master_addr=127.0.0.1", f"--master_port={free_port()}", *args]
        p = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
        assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
        return [p.stdout + p.stderr]
    # what srun gives each task (MASTER_ADDR set, so no scontrol is needed)
    port = str(free_port())
    procs = [subprocess.Popen([sys.executable, *args], cwd=REPO, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              env={**env, "SLURM_PROCID": str(r), "SLURM_LOCALID": str(r),
                                   "SLURM_NTASKS": "2", "SLURM_NODELIST": "node1",
                                   "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": port})
             for r in range(2)]
    logs = [p.communicate(timeout=600)[0] for p in procs]
    for p, log in zip(procs, logs):
        assert p.returncode == 0, log[-3000:]
    return logs


@pytest.mark.parametrize("launcher", ["pytorch", "slurm"])
def test_two_process_training(launcher, synth_prepared, tmp_path):
    out = tmp_path / "run"
    config = config_with(tmp_path, "custom_hooks = [dict(type='ParamDigestHook')]")
    logs = "\n".join(launch(launcher, train_args(synth_prepared, out, launcher, config)))

    # the same parameters on both ranks, before and after, and training moved them
    digests = [dict(line.split() for line in (out / "work" / f"param_digest_rank{r}.txt")
                    .read_text().splitlines()) for r in range(2)]
    assert digests[0] == digests[1]
    assert digests[0]["before"] != digests[0]["after"]

    # lr scaled by the total batch: 2 processes x 2 images vs the config's base of 8
    assert "current batch size is 4. Scaling the original LR by 0.5" in logs
    lr = (out / "dvclive" / "plots" / "metrics" / "lr.tsv").read_text().splitlines()
    assert len(lr) == 1 + MAX_ITERS

    # rank 0 alone wrote the records and the checkpoints
    assert logs.count("rank 0: wrote") == 1 and "rank 1: wrote" not in logs
    rec = json.loads((out / "metrics.json").read_text())
    assert rec["world_size"] == 2 and rec["total_batch_size"] == 4 and rec["iters"] == MAX_ITERS
    assert sorted(p.name for p in (out / "work").glob("*.pth")) == ["iter_2.pth", f"iter_{MAX_ITERS}.pth"]
    assert (out / "env.json").is_file() and not (out / "config.py").exists()


NAN_HOOK = """
import torch
from mmengine.dist import get_rank
from mmengine.hooks import Hook
from mmengine.registry import HOOKS


@HOOKS.register_module()
class NaNOnRank1Hook(Hook):
    priority = "HIGHEST"  # before FiniteLossHook sees the outputs

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        if get_rank() == 1 and runner.iter + 1 == 2:
            outputs["loss"] = torch.tensor(float("nan"))
"""


def test_nan_on_one_rank_stops_every_rank(synth_prepared, tmp_path):
    """Only rank 1's loss becomes NaN (iteration 2): both processes stop there with the
    run's message and exit 3, instead of rank 0 training on into a dead collective."""
    (tmp_path / "nan_on_rank1.py").write_text(NAN_HOOK)
    config = config_with(tmp_path, "custom_imports = dict(imports=['lossbench.models.registry', "
                                   "'nan_on_rank1'])\ncustom_hooks = [dict(type='NaNOnRank1Hook')]")
    args = train_args(synth_prepared, tmp_path / "run", "slurm", config)
    port = str(free_port())
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(tmp_path),
           "SLURM_NTASKS": "2", "SLURM_NODELIST": "node1", "MASTER_ADDR": "127.0.0.1",
           "MASTER_PORT": port}
    procs = [subprocess.Popen([sys.executable, *args], cwd=REPO, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              env={**env, "SLURM_PROCID": str(r), "SLURM_LOCALID": str(r)})
             for r in range(2)]
    logs = [p.communicate(timeout=300)[0] for p in procs]
    for p, log in zip(procs, logs):
        assert p.returncode == 3, log[-3000:]
        assert "loss became non-finite at iteration 2" in log, log[-3000:]
    assert not (tmp_path / "run" / "metrics.json").exists()


def test_launcher_without_its_environment_is_a_clear_error(synth_prepared, tmp_path):
    env = {k: v for k, v in os.environ.items()
           if k not in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT", "SLURM_PROCID")}
    p = subprocess.run([sys.executable, *train_args(synth_prepared, tmp_path / "r", "slurm")],
                       cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode == 2
    assert "--launcher slurm" in p.stderr and "SLURM_PROCID" in p.stderr
    assert not (tmp_path / "r").exists()


def test_determinism_is_gpu_safe(monkeypatch):
    """On CUDA: cuBLAS workspace fixed, and an op without a deterministic kernel warns."""
    import torch
    from mmengine.config import Config
    from mmengine.runner import Runner

    from lossbench.training.engine import build_runner

    def fake_from_cfg(cfg):  # what MMEngine's set_random_seed does for deterministic=True
        torch.use_deterministic_algorithms(True)
        return "runner"

    monkeypatch.setattr(Runner, "from_cfg", staticmethod(fake_from_cfg))
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    cfg = Config(dict(randomness=dict(seed=0, deterministic=True)))
    try:
        monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
        assert build_runner(cfg) == "runner"
        assert torch.are_deterministic_algorithms_enabled()
        assert not torch.is_deterministic_algorithms_warn_only_enabled()  # CPU: strict
        assert "CUBLAS_WORKSPACE_CONFIG" not in os.environ

        monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
        build_runner(cfg)
        assert torch.are_deterministic_algorithms_enabled()
        assert torch.is_deterministic_algorithms_warn_only_enabled()
        assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
    finally:
        torch.use_deterministic_algorithms(False)
