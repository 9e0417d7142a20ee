"""One GPU per concurrently running training: a lock-file device pool.

``LOSSBENCH_GPUS=0,1,2,3`` names the pool. Each ``lossbench train`` process takes the first device nobody holds by
``flock``-ing ``<LOSSBENCH_LOCK_DIR>/device<i>.lock`` (its pid and command line inside), sets ``CUDA_VISIBLE_DEVICES``
before CUDA starts and holds the lock until it exits (even on ``kill -9``); it waits up to ``LOSSBENCH_GPU_WAIT`` s
(default 3600, ``inf``) for a free one. Under ``torchrun`` / ``srun`` each rank takes its local rank's GPU instead. The
lock folder's safeguards: docs/reliability.md. Standard library only: it runs before CUDA may start.
"""

from __future__ import annotations

import errno
import fcntl
import os
import shlex
import stat
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

POOL_ENV = "LOSSBENCH_GPUS"
LOCK_DIR_ENV = "LOSSBENCH_LOCK_DIR"
WAIT_ENV = "LOSSBENCH_GPU_WAIT"

_held: list[int] = []  # descriptors of the held lock files, kept for the life of the process


class DevicePoolError(ValueError):
    """A bad pool or lock folder, or every device stayed busy (a configuration error)."""


def parse_pool(value: str) -> list[str]:
    """``"0,1, 3"`` → ``['0', '1', '3']``; each entry an integer device index."""
    ids = [v.strip() for v in value.split(",") if v.strip()]
    if not ids or not all(v.isdigit() for v in ids) or len(set(ids)) != len(ids):
        raise DevicePoolError(f"{POOL_ENV}={value!r}: expected distinct device indices, e.g. 0,1,2,3")
    return ids


def _open_lock_dir(d: Path) -> int:
    """Create ``d`` (mode 700) if missing, open it and check that only this user can write it."""
    try:
        d.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(d, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as e:
        raise DevicePoolError(f"device lock folder {d}: {e.strerror}; "
                              f"set {LOCK_DIR_ENV} to a folder you can write") from None
    st = os.fstat(fd)
    if d.is_symlink():  # e.g. planted in /tmp, to make us create lock files elsewhere
        problem = f"is a symbolic link; set {LOCK_DIR_ENV} to the folder itself"
    elif st.st_uid != os.getuid():
        problem = (f"belongs to uid {st.st_uid}, not to you (uid {os.getuid()}); remove it "
                   f"(it is re-created with mode 700) or set {LOCK_DIR_ENV} to a folder of yours")
    elif st.st_mode & 0o022:
        problem = (f"is writable by others (mode {stat.S_IMODE(st.st_mode):o}); "
                   f"run `chmod 700 {d}` or set {LOCK_DIR_ENV} to a private folder")
    else:
        return fd
    os.close(fd)
    raise DevicePoolError(f"device lock folder {d} {problem}")


def _open_lock(dir_fd: int, d: Path, dev: str) -> int:
    """Open (create) the lock file of ``dev``: never through a link, only a plain file of ours."""
    path = d / f"device{dev}.lock"
    try:
        fd = os.open(path.name, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, 0o600,
                     dir_fd=dir_fd)
    except OSError as e:
        why = ("is a symbolic link; remove it" if e.errno == errno.ELOOP else
               f"{e.strerror}; make {d} writable or set {LOCK_DIR_ENV} to a folder you can write")
        raise DevicePoolError(f"device lock file {path}: {why}") from None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode) or st.st_uid != os.getuid() or st.st_nlink != 1:
        os.close(fd)
        raise DevicePoolError(f"device lock file {path}: not a plain file of yours with one link; remove it")
    return fd


def acquire_device(pool: list[str], wait_s: float = float("inf"), poll_s: float = 1.0,
                   log: Callable[[str], None] = print) -> str:
    """Lock the first free device of ``pool`` for this process and return its index.
    Raises :class:`DevicePoolError` (naming the holders) when none frees within ``wait_s``."""
    d = Path(os.environ.get(LOCK_DIR_ENV) or os.path.join(tempfile.gettempdir(), f"lossbench-devices-{os.getuid()}"))
    dir_fd = _open_lock_dir(d)
    try:
        deadline = time.monotonic() + wait_s
        told = False
        while True:
            held_by = []
            for dev in pool:
                fd = _open_lock(dir_fd, d, dev)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    who = os.pread(fd, 300, 0).decode(errors="replace").strip()
                    held_by.append(f"device {dev}: {who or 'holder unknown'}")
                    os.close(fd)
                    continue
                os.ftruncate(fd, 0)  # a plain file of ours (_open_lock), now ours to write
                os.write(fd, f"pid {os.getpid()}: {shlex.join(sys.argv)}\n".encode())
                _held.append(fd)
                return dev
            busy = f"{POOL_ENV}={','.join(pool)}: all held ({'; '.join(held_by)}; locks in {d})"
            if time.monotonic() >= deadline:
                raise DevicePoolError(f"{busy}; no device freed within {wait_s:g} s; set {WAIT_ENV} to wait longer")
            if not told:
                log(f"waiting for a free device: {busy}")
                told = True
            time.sleep(poll_s)
    finally:
        os.close(dir_fd)


def pin_device_from_pool(log: Callable[[str], None] = print) -> str | None:
    """If ``LOSSBENCH_GPUS`` is set (and this is not a multi-process run), take one device of it and
    make it the only visible one. Returns the device or ``None``."""
    value = os.environ.get(POOL_ENV)
    if not value or "RANK" in os.environ or "SLURM_PROCID" in os.environ:
        return None
    wait = os.environ.get(WAIT_ENV) or "3600"
    if not wait.replace(".", "", 1).isdigit() and wait != "inf":
        raise DevicePoolError(f"{WAIT_ENV}={wait!r}: expected seconds to wait, e.g. 3600 or inf")
    dev = acquire_device(parse_pool(value), wait_s=float(wait), log=log)
    os.environ["CUDA_VISIBLE_DEVICES"] = dev
    log(f"device pool {POOL_ENV}={value}: this run uses device {dev} (CUDA_VISIBLE_DEVICES={dev})")
    return dev
