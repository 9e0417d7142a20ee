"""The lock-file GPU pool: one device per process, released when the process dies,
in a lock folder nobody else can tamper with."""

from __future__ import annotations

import ctypes
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lossbench.queue import log_name
from lossbench.training.devices import (
    DevicePoolError,
    acquire_device,
    parse_pool,
    pin_device_from_pool,
)

HOLD = """
import sys, time
from lossbench.training.devices import acquire_device
print(acquire_device(sys.argv[1].split(','), wait_s=float(sys.argv[2]), log=lambda m: None), flush=True)
time.sleep(float(sys.argv[3]))
"""


def hold(pool: str, wait_s: float, sleep_s: float, env) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", HOLD, pool, str(wait_s), str(sleep_s)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.fixture
def lock_env(tmp_path, monkeypatch):
    d = tmp_path / "locks"  # created by the pool itself
    monkeypatch.setenv("LOSSBENCH_LOCK_DIR", str(d))
    return {**os.environ, "LOSSBENCH_LOCK_DIR": str(d)}


def test_each_process_gets_its_own_device(lock_env):
    first = hold("0,1", 0, 30, lock_env)
    assert first.stdout.readline().strip() == "0"
    second = hold("0,1", 0, 30, lock_env)
    assert second.stdout.readline().strip() == "1"
    # the pool is exhausted: a third one gives up after its wait
    third = hold("0,1", 0.3, 0, lock_env)
    assert third.wait(30) == 1 and "no device freed within 0.3 s" in third.stderr.read()
    # kill -9 releases the device at once
    os.kill(first.pid, signal.SIGKILL)
    first.wait()
    fourth = hold("0,1", 5, 0, lock_env)
    assert fourth.stdout.readline().strip() == "0"
    for p in (second, fourth):
        p.kill()
        p.wait()


def test_a_time_out_names_the_holders(lock_env):
    holders = [hold("2,7", 0, 30, lock_env) for _ in range(2)]
    assert sorted(p.stdout.readline().strip() for p in holders) == ["2", "7"]
    try:
        with pytest.raises(DevicePoolError) as e:
            acquire_device(["2", "7"], wait_s=0.2, poll_s=0.05, log=lambda m: None)
        for p in holders:
            assert re.search(rf"device [27]: pid {p.pid}: -c 2,7 0 30\b", str(e.value))
        assert "LOSSBENCH_GPU_WAIT" in str(e.value)
    finally:
        for p in holders:
            p.kill()
            p.wait()


def test_a_waiting_process_gets_the_device_when_it_frees(lock_env):
    first = hold("3", 0, 1.0, lock_env)
    assert first.stdout.readline().strip() == "3"
    t0 = time.monotonic()
    waiter = hold("3", 30, 0, lock_env)
    assert waiter.stdout.readline().strip() == "3"
    assert time.monotonic() - t0 > 0.5  # it had to wait for the first to exit
    first.wait()
    waiter.wait()


def test_the_lock_folder_is_created_private(lock_env):
    assert acquire_device(["4"], wait_s=0) == "4"
    d = Path(lock_env["LOSSBENCH_LOCK_DIR"])
    assert oct(d.stat().st_mode & 0o777) == oct(0o700)
    assert oct((d / "device4.lock").stat().st_mode & 0o777) == oct(0o600)


@pytest.mark.parametrize("mode", [0o777, 0o770, 0o1777], ids=oct)
def test_a_folder_others_can_write_is_refused(lock_env, mode):
    d = Path(lock_env["LOSSBENCH_LOCK_DIR"])
    d.mkdir()
    d.chmod(mode)
    with pytest.raises(DevicePoolError, match=re.escape(
            f"device lock folder {d} is writable by others (mode {mode:o}); run `chmod 700 {d}`")):
        acquire_device(["0"], wait_s=0)
    assert not (d / "device0.lock").exists()


def test_a_folder_of_another_user_is_refused(lock_env, monkeypatch):
    d = Path(lock_env["LOSSBENCH_LOCK_DIR"])
    d.mkdir(mode=0o700)
    if os.getuid() == 0:
        os.chown(d, 65534, 65534)
        owner = 65534
    else:  # the folder is ours: make us someone else
        owner, me = os.getuid(), os.getuid() + 1
        monkeypatch.setattr(os, "getuid", lambda: me)
    with pytest.raises(DevicePoolError, match=re.escape(
            f"device lock folder {d} belongs to uid {owner}, not to you")):
        acquire_device(["0"], wait_s=0)
    assert not (d / "device0.lock").exists()


def test_a_symlinked_folder_is_refused(lock_env, tmp_path):
    (tmp_path / "mine").mkdir(mode=0o700)
    d = Path(lock_env["LOSSBENCH_LOCK_DIR"])
    d.symlink_to(tmp_path / "mine")
    with pytest.raises(DevicePoolError, match=re.escape(f"lock folder {d} is a symbolic link")):
        acquire_device(["0"], wait_s=0)
    assert not (tmp_path / "mine" / "device0.lock").exists()


@pytest.mark.parametrize("link", ["symlink", "hardlink"])
def test_a_planted_link_is_never_written_through(lock_env, tmp_path, link):
    d = Path(lock_env["LOSSBENCH_LOCK_DIR"])
    d.mkdir(mode=0o700)
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    if link == "symlink":
        (d / "device0.lock").symlink_to(victim)
        why = "is a symbolic link"
    else:
        os.link(victim, d / "device0.lock")
        why = "not a plain file of yours with one link"
    try:
        acquire_device(["0"], wait_s=0)
        refused = ""
    except DevicePoolError as e:
        refused = str(e)
    assert victim.read_text() == "precious\n"
    assert refused.startswith(f"device lock file {d}/device0.lock: {why}; remove it")


TRY = """
from lossbench.training.devices import acquire_device
try:
    acquire_device(['0'], wait_s=0)
except ValueError as e:  # what the command line reports as an error, without a traceback
    print(e)
"""


def _without_dac_override():
    """Make root subject to file modes, as everyone else is (drop CAP_DAC_OVERRIDE)."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(24, 1, 0, 0, 0) != 0:  # PR_CAPBSET_DROP, CAP_DAC_OVERRIDE
        raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


def test_an_unwritable_folder_is_a_clear_error(lock_env):
    d = Path(lock_env["LOSSBENCH_LOCK_DIR"])
    d.mkdir(mode=0o500)
    out = subprocess.run([sys.executable, "-c", TRY], env=lock_env, capture_output=True, text=True,
                         check=False,
                         preexec_fn=_without_dac_override if os.getuid() == 0 else None)
    d.chmod(0o700)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith(f"device lock file {d}/device0.lock: Permission denied; "
                                 f"make {d} writable")


def test_pin_sets_cuda_visible_devices(lock_env, monkeypatch):
    monkeypatch.setenv("LOSSBENCH_GPUS", "5,6")
    monkeypatch.delenv("RANK", raising=False)
    monkeypatch.delenv("SLURM_PROCID", raising=False)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert pin_device_from_pool(log=lambda m: None) == "5"
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "5"
    # under torchrun the launcher decides: the pool is left alone
    monkeypatch.setenv("RANK", "0")
    assert pin_device_from_pool(log=lambda m: None) is None


def test_bad_pool_or_wait_is_named(lock_env, monkeypatch):
    assert parse_pool(" 0, 2,3") == ["0", "2", "3"]
    for bad in ("", "0,0", "gpu0", "1,-1"):
        with pytest.raises(DevicePoolError, match="LOSSBENCH_GPUS"):
            parse_pool(bad)
    monkeypatch.setenv("LOSSBENCH_GPUS", "0")
    monkeypatch.delenv("RANK", raising=False)
    monkeypatch.delenv("SLURM_PROCID", raising=False)
    for bad in ("-1", "soon", "nan"):
        monkeypatch.setenv("LOSSBENCH_GPU_WAIT", bad)
        with pytest.raises(DevicePoolError, match=f"LOSSBENCH_GPU_WAIT='{bad}': expected seconds"):
            pin_device_from_pool(log=lambda m: None)


def test_devices_imports_nothing_that_touches_cuda():
    code = ("import sys, lossbench.training.devices; "
            "print(sorted({'torch', 'mmengine', 'mmdet', 'mmcv'} & set(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_stage_log_names_are_file_safe():
    assert log_name("train_sse@0.5-0") == "train_sse-0_5-0"
    assert log_name("train_focal@setting1-1") == "train_focal-setting1-1"
    assert log_name("train_ohem@all-0") == "train_ohem-all-0"
