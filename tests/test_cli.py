"""The command line: every sub-command answers --help; `lossbench env` records the stack and machine."""

from __future__ import annotations

import json
import platform
import subprocess
import sys

import pytest

from lossbench import __version__
from lossbench.cli import COMMANDS, main
from lossbench.training.envinfo import cpu_model, mmcv_ops_status


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
    # MMEngine's collect_env() block, and what tells machines apart
    assert rec["MMEngine"] == "0.10.7" and rec["PyTorch"] == rec["packages"]["torch"]
    assert rec["CUDA available"] in (True, False) and "numpy_random_seed" not in rec
    assert rec["cpu_model"] == cpu_model() and rec["cpu_threads"] >= 1
    assert rec["cpu_capability"] in ("DEFAULT", "VSX", "Z VECTOR", "NO AVX", "AVX2", "AVX512", "SVE256")
    text = lossbench("env")
    assert text.returncode == 0 and f"cpu_model: {rec['cpu_model']}" in text.stdout
    assert "packages.mmdet: 3.3.0" in text.stdout and "mmcv_ops.detail: nms ok" in text.stdout


def test_cpu_model_from_cpuinfo(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nvendor_id\t: GenuineIntel\n"
                    "model name\t: Intel(R) Xeon(R) Platinum 8488C\nflags\t\t: fpu avx512f amx_tile\n")
    assert cpu_model(info) == "Intel(R) Xeon(R) Platinum 8488C"
    assert cpu_model(tmp_path / "absent") == (platform.processor() or platform.machine())


def test_ops_check_can_fail(monkeypatch):
    # the check really runs nms: a broken op is reported, not assumed
    import mmcv.ops

    def broken(*a, **k):
        raise RuntimeError("mmcv._ext not found")

    monkeypatch.setattr(mmcv.ops, "nms", broken)
    ok, detail = mmcv_ops_status()
    assert not ok and "mmcv._ext not found" in detail


def test_git_revision_is_dirty_for_code_not_for_results(tmp_path):
    from lossbench.training.envinfo import git_revision

    def git(*a):
        subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@localhost", *a], cwd=tmp_path,
                       check=True, capture_output=True)

    git("init", "-q")
    for f in ("src/a.py", "runs/x/metrics.json", "reports/r.md", "dvc.lock"):
        (tmp_path / f).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / f).write_text("1\n")
    git("add", "-A")
    git("commit", "-qm", "c")
    clean = git_revision(tmp_path)
    assert clean and not clean.endswith("-dirty")
    # the pipeline rewriting its results leaves the revision clean
    (tmp_path / "runs/x/metrics.json").unlink()
    (tmp_path / "dvc.lock").write_text("2\n")
    (tmp_path / "reports/r.md").write_text("2\n")
    assert git_revision(tmp_path) == clean
    (tmp_path / "src/a.py").write_text("2\n")  # code not committed
    assert git_revision(tmp_path) == clean + "-dirty"
