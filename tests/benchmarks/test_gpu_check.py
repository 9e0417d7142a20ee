"""The GPU check's Python part, rehearsed on the CPU, and its GPU-hour arithmetic."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "benchmarks" / "gpu_check.py"


def _module():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_gpu_hours_by_hand():
    gc = _module()
    # VOC07+12: 16,551 images x 3 repeats x 4 epochs = 198,612 images per run
    assert gc.IMAGES_PER_RUN["voc"] == 198_612
    assert gc.IMAGES_PER_RUN["coco"] == 1_407_192
    # 6 runs at 100 img/s: 198,612 * 6 / 100 s = 11,916.72 s = 3.3102 h
    assert gc.gpu_hours(198_612, 6, 100.0) == pytest.approx(3.3102, abs=1e-4)
    params = {"seeds": [0, 1, 2], "focal": {"settings": [{}, {}]},
              "ohem": {"neg_pos_ratio": [1, 3, None, 10]}, "sse": {"lambda_noobj": [0.5]}}
    assert gc.grid_runs(params) == {"focal": 6, "ohem": 12, "sse": 3}


@pytest.mark.slow
def test_rehearsal_on_cpu(tmp_path):
    out = tmp_path / "out"
    p = subprocess.run(
        [sys.executable, str(SCRIPT), "--device", "cpu", "--amp", "none", "--data-profile", "smoke",
         "--iters", "3", "--warmup", "1", "--batch", "2", "--workers", "0", "--probe-iters", "1",
         "--probe-warmup", "1", "--probe-batch", "1", "--data", str(tmp_path / "data"),
         "--out", str(out)], cwd=REPO, capture_output=True, text=True, timeout=900)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    res = json.loads((out / "gpu_check.json").read_text())
    assert [r["family"] for r in res["synth"]] == ["focal", "ohem", "sse"]
    for r in res["synth"]:
        assert r["train_images_per_s"] > 0 and r["eval_device"] == "cpu"
        assert 0 <= r["mAP50"] <= 1 and "loss_cls" in r["final"]
    assert len(res["probe"]) == 6
    # the estimate is images per run x runs / measured img/s, summed over families
    gc = _module()
    for prof in ("voc", "coco"):
        e = res["estimate"][prof]
        expected = sum(gc.IMAGES_PER_RUN[prof] * e["runs"][r["family"]] / r["images_per_s"] / 3600
                       for r in res["probe"] if r["profile"] == prof)
        assert e["gpu_hours"] == pytest.approx(expected, rel=1e-3) and e["estimate"] is True
    md = (out / "gpu_check.md").read_text()
    assert "ESTIMATE" in md and "| sse |" in md
