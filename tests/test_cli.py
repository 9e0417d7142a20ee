"""The command line: every sub-command answers --help; `lossbench env` checks mmcv's ops."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from lossbench import __version__
from lossbench.cli import COMMANDS, main
from lossbench.envinfo import mmcv_ops_status


def lossbench(*args):
    return subprocess.run([sys.executable, "-m", "lossbench", *args], capture_output=True, text=True)


def test_version():
    res = lossbench("--version")
    assert res.returncode == 0 and res.stdout.strip() == f"lossbench {__version__}"


def test_help_lists_every_command():
    out = lossbench("--help").stdout
    for name in COMMANDS:
        assert name in out


@pytest.mark.parametrize("command, expected", [
    ("synth", "--n-train"), ("fetch", "--mirror"), ("prepare", "--subset"),
    ("train", "--neg-pos-ratio"), ("report", "--runs"), ("env", "--json"),
])
def test_each_command_has_help(command, expected, capsys):
    with pytest.raises(SystemExit) as e:
        main([command, "--help"])
    assert e.value.code == 0
    assert expected in capsys.readouterr().out


def test_env_reports_mmcv_ops_loaded():
    res = lossbench("env", "--json")
    assert res.returncode == 0, res.stderr
    rec = json.loads(res.stdout)
    assert rec["mmcv_ops"] == {"loaded": True, "detail": "nms ok"}
    assert rec["packages"]["mmcv"] == "2.1.0" and rec["packages"]["mmdet"] == "3.3.0"
    assert rec["device"] in ("cpu", "cuda")


def test_ops_check_can_fail(monkeypatch):
    # the check really runs nms: a broken op is reported, not assumed
    import mmcv.ops

    def broken(*a, **k):
        raise RuntimeError("mmcv._ext not found")

    monkeypatch.setattr(mmcv.ops, "nms", broken)
    ok, detail = mmcv_ops_status()
    assert not ok and "mmcv._ext not found" in detail
