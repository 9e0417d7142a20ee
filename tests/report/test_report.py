"""The report: built from fabricated runs, checked against hand-computed values."""

import json
from pathlib import Path

import pandas as pd
import pytest

from lossbench.report.build import build_report
from lossbench.report.collect import run_dir

PARAMS = {
    "seeds": [0, 1],
    "focal": {"settings": [{"gamma": 0.0, "alpha": 0.75}, {"gamma": 2.0, "alpha": 0.25}]},
    "ohem": {"neg_pos_ratio": [3, "all"]},
    "sse": {"lambda_noobj": [0.5]},
}
# mAP50 per run; (family, setting index, seed) -> value. sse seed 1 is missing.
MAP50 = {("focal", 0, 0): 0.50, ("focal", 0, 1): 0.54, ("focal", 1, 0): 0.60, ("focal", 1, 1): 0.64,
         ("ohem", 0, 0): 0.58, ("ohem", 0, 1): 0.56, ("ohem", 1, 0): 0.40, ("ohem", 1, 1): 0.44,
         ("sse", 0, 0): 0.45}


def _settings(fam):
    if fam == "focal":
        return PARAMS["focal"]["settings"]
    if fam == "ohem":
        return [{"neg_pos_ratio": r} for r in PARAMS["ohem"]["neg_pos_ratio"]]
    return [{"lambda_noobj": v} for v in PARAMS["sse"]["lambda_noobj"]]


@pytest.fixture
def runs(tmp_path):
    root = tmp_path / "runs"
    for (fam, i, seed), v in MAP50.items():
        d = run_dir(root, fam, _settings(fam)[i], seed)
        d.mkdir(parents=True)
        metrics = {m: v / 2 for m in ("AP", "AP50", "AP75", "APs", "APm", "APl")}
        metrics["mAP50"] = v
        if fam == "ohem":
            metrics["APl"] = None  # pycocotools' -1: no large objects
        (d / "metrics.json").write_text(json.dumps({
            "metrics": metrics, "final": {"loss_cls": 0.3}, "timing": {"wall_time_s": 10.0},
            "no_detections": False, "iters": 10}))
        (d / "env.json").write_text(json.dumps({"git_revision": "abc", "packages": {"torch": "2.13.0"},
                                                "device": "cpu", "cpu": "x86_64", "cpu_threads": 2}))
        curves = d / "dvclive" / "plots" / "metrics"
        curves.mkdir(parents=True)
        for k, vals in {"loss_cls": [1.0, 0.5], "loss_bbox": [0.8, 0.4], "diag_share_pos": [0.2, 0.5],
                        "diag_share_hard_neg": [0.3, 0.3], "diag_share_easy_neg": [0.5, 0.2]}.items():
            pd.DataFrame({"step": [10, 20], k: vals}).to_csv(curves / f"{k}.tsv", sep="\t", index=False)
    return root


def test_report_tables_follow_the_runs(runs, tmp_path):
    out = tmp_path / "report"
    res = build_report(runs, PARAMS, "synth", out, lock=None)
    s = res["summary"].set_index(["family", "order"])
    # focal gamma 2: mean of 0.60, 0.64 = 0.62; std = 0.028284; t(0.975, 1) = 12.706205
    #   -> half width 12.706205 * 0.028284 / sqrt(2) = 0.254124
    r = s.loc[("focal", 1)]
    assert r["mAP50_mean"] == pytest.approx(0.62)
    assert r["mAP50_hi"] - r["mAP50_mean"] == pytest.approx(0.254124, abs=1e-5)
    assert bool(r["best"]) and not bool(s.loc[("focal", 0), "best"])
    assert bool(s.loc[("ohem", 0), "best"])
    # sse has one of two seeds: shown as such, never as a complete row
    assert s.loc[("sse", 0), "n"] == 1 and s.loc[("sse", 0), "n_expected"] == 2

    md = (out / "tables" / "focal.md").read_text()
    assert "| **2 (0.25)** | **2/2** | **62.0 ± 2.8 [36.6, 87.4]**" in md
    assert "| 0 (0.75) | 2/2 | 52.0 ± 2.8" in md
    assert "1/2" in (out / "tables" / "sse.md").read_text()
    assert "(n=1)" in (out / "tables" / "sse.md").read_text()
    tex = (out / "tables" / "focal.tex").read_text()
    assert r"\toprule" in tex and r"\textbf{62.0 $\pm$ 2.8}" in tex
    # ratio 3: 0.58, 0.56 -> mean 57.0, std 1.4, half width 12.706 * 1.414 / sqrt(2) = 12.7
    assert "| **57.0 ± 1.4 [44.3, 69.7]** |" in (out / "tables" / "ohem.md").read_text()
    assert (out / "tables" / "ohem.md").read_text().rstrip().endswith("n/a |")
    csv = pd.read_csv(out / "tables" / "ohem.csv")
    assert csv["mAP50_mean"].tolist() == pytest.approx([0.57, 0.42])

    readme = (out / "README.md").read_text()
    assert "1 expected run(s) missing" in readme and "sse 0.5 seed 1" in readme
    assert "theirs" in readme and "34.0 AP" in readme
    # cross-family: focal (0.60, 0.64) - ohem ratio 3 (0.58, 0.56): paired diffs 0.02, 0.08 -> +5.0
    cross = (out / "tables" / "cross_family.md").read_text()
    assert "focal (2 (0.25)) − ohem (3) | +5.0" in cross
    assert "(one seed, no interval)" in cross  # sse has a single seed to pair

    for name in ("ablation_mAP50", "cross_family_mAP50", "training_curves", "loss_shares",
                 "focal_loss_fig1"):
        for ext in ("png", "pdf"):
            assert (out / "figures" / f"{name}.{ext}").stat().st_size > 5000


def test_report_with_no_runs_marks_everything_missing(tmp_path):
    out = tmp_path / "report"
    build_report(tmp_path / "none", PARAMS, "synth", out, lock=None)
    assert "10 expected run(s) missing" in (out / "README.md").read_text()
    assert "missing" in (out / "tables" / "focal.md").read_text()
