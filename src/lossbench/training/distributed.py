"""Data-parallel training of one run under torchrun or Slurm, through MMEngine's launchers.

On GPUs MMEngine does everything (NCCL, one device per local rank). Its launchers call ``torch.cuda.set_device``, so on
CPUs the gloo process group is started here from the launcher's environment (torchrun: RANK, WORLD_SIZE, MASTER_ADDR,
MASTER_PORT; srun: SLURM_PROCID, SLURM_NTASKS, SLURM_NODELIST) and the model is wrapped without device ids.
"""

from __future__ import annotations

import os
import subprocess


def is_main_process() -> bool:
    """Rank 0 of torchrun (RANK) or srun (SLURM_PROCID), or a single process."""
    return int(os.environ.get("RANK", os.environ.get("SLURM_PROCID", "0"))) == 0


def _slurm_env(env) -> None:
    missing = [k for k in ("SLURM_PROCID", "SLURM_NTASKS", "SLURM_NODELIST") if k not in env]
    if missing:
        raise ValueError(f"--launcher slurm: {', '.join(missing)} not set (run under srun)")
    env["RANK"], env["WORLD_SIZE"] = env["SLURM_PROCID"], env["SLURM_NTASKS"]
    env["LOCAL_RANK"] = env.get("SLURM_LOCALID", "0")
    env.setdefault("MASTER_PORT", "29500")
    if "MASTER_ADDR" not in env:
        env["MASTER_ADDR"] = subprocess.run(["scontrol", "show", "hostnames", env["SLURM_NODELIST"]],
                                            capture_output=True, text=True, check=True).stdout.split()[0]


def setup_distributed(cfg, launcher: str) -> None:
    """Run ``cfg`` data-parallel under MMEngine's ``launcher`` ('pytorch' or 'slurm')."""
    import torch
    import torch.distributed as dist

    cfg.launcher = launcher
    if torch.cuda.is_available():
        cfg.env_cfg.dist_cfg = dict(backend="nccl")
        return
    cfg.env_cfg.dist_cfg = dict(backend="gloo")
    cfg.model_wrapper_cfg = dict(type="MMDistributedDataParallel", device_ids=None,
                                 broadcast_buffers=False, find_unused_parameters=False)
    if dist.is_initialized():
        return
    if launcher == "slurm":
        _slurm_env(os.environ)
    missing = [k for k in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT") if k not in os.environ]
    if missing:
        raise ValueError(f"--launcher {launcher}: {', '.join(missing)} not set "
                         "(run under torchrun / python -m torch.distributed.run)")
    dist.init_process_group(backend="gloo")
