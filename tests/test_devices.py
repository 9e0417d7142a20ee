"""The lock-file GPU pool: one device per process, released when the process dies."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from lossbench.devices import acquire_device, parse_pool, pin_device_from_pool
from lossbench.stages.queue import exp_name

HOLD = """
import sys, time
from lossbench.devices import acquire_device
print(acquire_device(sys.argv[1].split(','), wait_s=float(sys.argv[2]), log=lambda m: None), flush=True)
time.sleep(float(sys.argv[3]))
"""


def hold(pool: str, wait_s: float, sleep_s: float, env) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", HOLD, pool, str(wait_s), str(sleep_s)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.fixture
def lock_env(tmp_path, monkeypatch):
    monkeypatch.setenv("LOSSBENCH_LOCK_DIR", str(tmp_path))
    return {**os.environ, "LOSSBENCH_LOCK_DIR": str(tmp_path)}


def test_each_process_gets_its_own_device(lock_env):
    first = hold("0,1", 0, 30, lock_env)
    assert first.stdout.readline().strip() == "0"
    second = hold("0,1", 0, 30, lock_env)
    assert second.stdout.readline().strip() == "1"
    # the pool is exhausted: a third one gives up after its wait
    third = hold("0,1", 0.3, 0, lock_env)
    assert third.wait(30) == 1 and "stayed busy" in third.stderr.read()
    # kill -9 releases the device at once
    os.kill(first.pid, signal.SIGKILL)
    first.wait()
    fourth = hold("0,1", 5, 0, lock_env)
    assert fourth.stdout.readline().strip() == "0"
    for p in (second, fourth):
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


def test_bad_pool_is_named():
    assert parse_pool(" 0, 2,3") == ["0", "2", "3"]
    for bad in ("", "0,0", "gpu0", "1,-1"):
        with pytest.raises(ValueError, match="LOSSBENCH_GPUS"):
            parse_pool(bad)
    with pytest.raises(TimeoutError):
        acquire_device([], wait_s=0)


def test_experiment_names_are_git_ref_safe():
    assert exp_name("train_sse@0.5-0") == "train_sse-0_5-0"
    assert exp_name("train_focal@setting1-1") == "train_focal-setting1-1"
    assert exp_name("train_ohem@all-0") == "train_ohem-all-0"
