"""One GPU per concurrently running training: a lock-file device pool.

``LOSSBENCH_GPUS=0,1,2,3`` names the pool. Each ``lossbench train`` process
(one DVC queue worker runs one at a time) takes the first device nobody holds
by locking ``<lock dir>/device<i>.lock`` with ``flock``, sets
``CUDA_VISIBLE_DEVICES`` to it before CUDA starts, and keeps the lock until it
exits, so ``dvc queue start -j 4`` over a pool of four GPUs gives every worker
its own GPU, whichever worker picks which experiment. The kernel drops the
lock when the process ends, even on ``kill -9``, so a crashed run never keeps
a device.

``LOSSBENCH_LOCK_DIR`` sets the lock folder (default: a per-user folder in
the system's temporary directory); it must be shared by all workers of the
machine. Under ``torchrun`` / ``srun`` (one run over several GPUs) the pool is
not used: each rank takes the GPU of its local rank.
"""

from __future__ import annotations

import fcntl
import os
import tempfile
import time
from pathlib import Path
from typing import Callable

POOL_ENV = "LOSSBENCH_GPUS"
LOCK_DIR_ENV = "LOSSBENCH_LOCK_DIR"

_held: list = []  # open lock files, kept for the life of the process


def lock_dir() -> Path:
    d = os.environ.get(LOCK_DIR_ENV) or os.path.join(tempfile.gettempdir(),
                                                     f"lossbench-devices-{os.getuid()}")
    return Path(d)


def parse_pool(value: str) -> list[str]:
    """``"0,1, 3"`` → ``['0', '1', '3']``; each entry an integer device index."""
    ids = [v.strip() for v in value.split(",") if v.strip()]
    if not ids or not all(v.isdigit() for v in ids) or len(set(ids)) != len(ids):
        raise ValueError(f"{POOL_ENV}={value!r}: expected distinct device indices, e.g. 0,1,2,3")
    return ids


def acquire_device(pool: list[str], wait_s: float = float("inf"), poll_s: float = 1.0,
                   log: Callable[[str], None] = print) -> str:
    """Lock the first free device of ``pool`` for this process and return its index."""
    d = lock_dir()
    d.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + wait_s
    told = False
    while True:
        for dev in pool:
            f = open(d / f"device{dev}.lock", "a+")
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                f.close()
                continue
            f.seek(0)
            f.truncate()
            f.write(f"{os.getpid()}\n")
            f.flush()
            _held.append(f)
            return dev
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{POOL_ENV}: all of devices {','.join(pool)} stayed busy "
                               f"(locks in {d})")
        if not told:
            log(f"waiting for a free device of {POOL_ENV}={','.join(pool)} (locks in {d})")
            told = True
        time.sleep(poll_s)


def pin_device_from_pool(log: Callable[[str], None] = print) -> str | None:
    """If ``LOSSBENCH_GPUS`` is set (and this is not a multi-process run), take one
    device of it and make it the only visible one. Returns the device or ``None``."""
    value = os.environ.get(POOL_ENV)
    if not value or "RANK" in os.environ or "SLURM_PROCID" in os.environ:
        return None
    dev = acquire_device(parse_pool(value), log=log)
    os.environ["CUDA_VISIBLE_DEVICES"] = dev
    log(f"device pool {POOL_ENV}={value}: this run uses device {dev} (CUDA_VISIBLE_DEVICES={dev})")
    return dev
