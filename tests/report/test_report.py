"""The report: built from fabricated runs, checked against hand-computed values."""

import json
import shutil

import pandas as pd
import pytest

from lossbench.report.build import build_report

PARAMS = {
    "seeds": [0, 1],
    "focal": {"settings": [{"gamma": 0.0, "alpha": 0.75}, {"gamma": 2.0, "alpha": 0.25}]},
    "ohem": {"neg_pos_ratio": [3, "all"]},
    "sse": {"lambda_noobj": [0.5]},
}
# The folders dvc.yaml gives these settings, spelled by hand.
FOLDER = {("focal", 0): "focal/gamma0.0_alpha0.75", ("focal", 1): "focal/gamma2.0_alpha0.25",
          ("ohem", 0): "ohem/ratio3", ("ohem", 1): "ohem/ratioall", ("sse", 0): "sse/lambda0.5"}
# mAP50 per run; (family, setting index, seed) -> value. sse seed 1 is missing.
MAP50 = {("focal", 0, 0): 0.50, ("focal", 0, 1): 0.54, ("focal", 1, 0): 0.60, ("focal", 1, 1): 0.64,
         ("ohem", 0, 0): 0.58, ("ohem", 0, 1): 0.56, ("ohem", 1, 0): 0.40, ("ohem", 1, 1): 0.44,
         ("sse", 0, 0): 0.45}
# AP = 1 - mAP50 ranks every grid the other way round: the best by mAP50 is the worst by AP.
# Two runs come from a modified tree; ohem's env.json files are of the older format (no CPU model).
DIRTY = {("focal", 0, 1), ("sse", 0, 0)}


@pytest.fixture
def runs(tmp_path):
    root = tmp_path / "runs"
    for (fam, i, seed), v in MAP50.items():
        d = root / FOLDER[fam, i] / f"seed{seed}"
        d.mkdir(parents=True)
        metrics = {m: v / 2 for m in ("AP50", "AP75", "APs", "APm", "APl")}
        metrics.update(mAP50=v, AP=round(1 - v, 6))
        if fam == "ohem":
            metrics["APl"] = None  # pycocotools' -1: no large objects
        (d / "metrics.json").write_text(json.dumps({
            "metrics": metrics, "final": {"loss_cls": 0.3}, "timing": {"wall_time_s": 10.0},
            "no_detections": False, "iters": 10}))
        env = {"git_revision": "abc" + "-dirty" * ((fam, i, seed) in DIRTY),
               "packages": {"torch": "2.13.0"}, "cpu_threads": 2}
        env.update({"cpu": "x86_64"} if fam == "ohem" else
                   {"cpu_model": "Fake CPU 9000", "cpu_capability": "AVX2", "Python": "3.11.7 (main)"})
        (d / "env.json").write_text(json.dumps(env))
        curves = d / "dvclive" / "plots" / "metrics"
        curves.mkdir(parents=True)
        for k, vals in {"loss_cls": [1.0, 0.5], "loss_bbox": [0.8, 0.4], "diag_share_pos": [0.2, 0.5],
                        "diag_share_hard_neg": [0.3, 0.3], "diag_share_easy_neg": [0.5, 0.2]}.items():
            pd.DataFrame({"step": [10, 20], k: vals}).to_csv(curves / f"{k}.tsv", sep="\t", index=False)
    return root


def md_rows(text: str) -> list[list[str]]:
    """The cells of every row of the Markdown tables in ``text`` (header rows included)."""
    return [[c.strip() for c in line.strip().strip("|").split("|")] for line in text.splitlines()
            if line.startswith("|") and set(line) - set("|-: ")]


def test_report_tables_follow_the_runs(runs, tmp_path):
    out = tmp_path / "report"
    res = build_report(runs, PARAMS, "synth", out)
    s = res["summary"].set_index(["family", "order"])
    # focal gamma 2: mean of 0.60, 0.64 = 0.62; std = 0.028284; t(0.975, 1) = 12.706205
    #   -> half width 12.706205 * 0.028284 / sqrt(2) = 0.254124
    r = s.loc[("focal", 1)]
    assert r["mAP50_mean"] == pytest.approx(0.62)
    assert r["mAP50_hi"] - r["mAP50_mean"] == pytest.approx(0.254124, abs=1e-5)
    # sse has one of two seeds: shown as such, never as a complete row
    assert s.loc[("sse", 0), "n"] == 1 and s.loc[("sse", 0), "n_expected"] == 2

    focal = md_rows((out / "tables" / "focal.md").read_text())
    assert focal[0] == ["γ (α)", "seeds", "mAP50", "AP", "AP50", "AP75", "APs", "APm", "APl"]
    # AP of gamma 2: 0.40, 0.36 -> 38.0 ± 2.8
    assert focal[2][:4] == ["**2 (0.25)**", "**2/2**", "**62.0 ± 2.8 [36.6, 87.4]**",
                            "**38.0 ± 2.8 [12.6, 63.4]**"]
    assert focal[1][:3] == ["0 (0.75)", "2/2", "52.0 ± 2.8 [26.6, 77.4]"]
    sse = md_rows((out / "tables" / "sse.md").read_text())
    assert sse[1][:3] == ["**0.5**", "**1/2**", "**45.0 (n=1)**"]
    tex = (out / "tables" / "focal.tex").read_text()
    assert tex.startswith("\\begin{tabular}{lcccccccc}\n\\toprule\n$\\gamma$ ($\\alpha$) & seeds & mAP50")
    assert r"\midrule" in tex and r"\bottomrule" in tex
    assert r"\textbf{2 (0.25)} & \textbf{2/2} & \textbf{62.0 $\pm$ 2.8} & \textbf{38.0 $\pm$ 2.8}" in tex
    assert "0 (0.75) & 2/2 & 52.0 $\\pm$ 2.8 & 48.0 $\\pm$ 2.8" in tex
    # ratio 3: 0.58, 0.56 -> mean 57.0, std 1.4, half width 12.706 * 1.414 / sqrt(2) = 12.7
    ohem = md_rows((out / "tables" / "ohem.md").read_text())
    assert ohem[1][2] == "**57.0 ± 1.4 [44.3, 69.7]**" and ohem[2][-1] == "n/a"
    csv = pd.read_csv(out / "tables" / "ohem.csv")
    assert csv["mAP50_mean"].tolist() == pytest.approx([0.57, 0.42])

    readme = (out / "README.md").read_text()
    assert "1 expected run(s) missing" in readme and "sse/lambda0.5/seed1" in readme
    assert "theirs" in readme and "34.0 AP" in readme
    # cross-family: focal (0.60, 0.64) - ohem ratio 3 (0.58, 0.56): paired diffs 0.02, 0.08 -> +5.0
    cross = md_rows((out / "tables" / "cross_family.md").read_text())
    #   t = 0.05 / (0.042426 / sqrt 2) = 1.6667, df 1 -> p = 1 - 2 atan(1.6667) / pi = 0.344; the
    #   one-seed comparison has no p-value, so Holm corrects m = 1 comparison: level 95%
    assert ["focal (2 (0.25)) − ohem (3)", "+5.0 [-33.1, +43.1]", "95.0%", "0.344", "2",
            "not resolved"] in cross
    assert ["focal (2 (0.25)) − sse (0.5)", "+15.0 (one seed, no interval)", "95.0%", "n/a", "1",
            "not resolved"] in cross
    assert pd.read_csv(out / "tables" / "cross_family_differences.csv")["n_pairs"].tolist() == [2, 1, 1]
    assert "focal & $\\gamma$ ($\\alpha$) = 2 (0.25) & 2/2 & 62.0 $\\pm$ 2.8" in (
        out / "tables" / "cross_family.tex").read_text()
    runs_csv = pd.read_csv(out / "runs.csv")
    assert runs_csv["run"].tolist()[:2] == ["focal/gamma0.0_alpha0.75/seed0",
                                            "focal/gamma0.0_alpha0.75/seed1"]
    assert "run_dir" not in runs_csv  # no path of this machine in the report

    for name in ("ablation_mAP50", "cross_family_mAP50", "training_curves", "loss_shares",
                 "focal_loss_fig1"):
        for ext in ("png", "pdf"):
            assert (out / "figures" / f"{name}.{ext}").stat().st_size > 5000


def test_best_is_chosen_by_map50_not_ap(runs, tmp_path):
    # AP = 1 - mAP50 in the fixture: choosing by AP would pick gamma 0 and ratio 'all'
    res = build_report(runs, PARAMS, "synth", tmp_path / "report")
    best = res["best"].set_index("family")["label"].to_dict()
    assert best == {"focal": "2 (0.25)", "ohem": "3", "sse": "0.5"}
    bold = [r[0] for r in md_rows((tmp_path / "report" / "tables" / "focal.md").read_text())
            if r[0].startswith("**")]
    assert bold == ["**2 (0.25)**"]
    cross = md_rows((tmp_path / "report" / "tables" / "cross_family.md").read_text())
    assert [r[1] for r in cross[1:4]] == ["γ (α) = 2 (0.25)", "neg:pos = 3", "λ_noobj = 0.5"]
    assert res["diffs"][["setting_a", "setting_b"]].values.tolist() == [
        ["2 (0.25)", "3"], ["2 (0.25)", "0.5"], ["3", "0.5"]]


def test_unchanged_runs_give_byte_identical_reports(runs, tmp_path, monkeypatch):
    # two builds at different times (matplotlib dates a PDF from SOURCE_DATE_EPOCH when set)
    # and from the same runs in another folder: every file identical
    moved = tmp_path / "elsewhere" / "runs"
    shutil.copytree(runs, moved)
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1000000000")
    build_report(runs, PARAMS, "synth", tmp_path / "a")
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    build_report(moved, PARAMS, "synth", tmp_path / "b")
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(tmp_path / "b") for p in (tmp_path / "b").rglob("*") if p.is_file())
    # 3 x 3 family tables, 3 cross-family, 2 x 2 against the paper default, 12 figures, runs.csv,
    # README, provenance
    assert len(files) == 31
    different = [str(f) for f in files if (tmp_path / "a" / f).read_bytes() != (tmp_path / "b" / f).read_bytes()]
    assert different == []


def test_provenance_names_dirty_runs_and_machines(runs, tmp_path):
    out = tmp_path / "report"
    prov = build_report(runs, PARAMS, "synth", out)["provenance"]
    assert prov["runs_not_from_a_clean_tree"] == ["focal/gamma0.0_alpha0.75/seed1", "sse/lambda0.5/seed0"]
    assert prov["git_revisions_of_runs"] == ["abc", "abc-dirty"]
    assert prov["machines_of_runs"] == ["Fake CPU 9000 (2 threads, AVX2)", "x86_64 (2 threads)"]
    assert prov["python"] == "3.11.7" and prov["sum_of_run_wall_times_s"] == 90.0
    assert json.loads((out / "provenance.json").read_text()) == prov
    readme = (out / "README.md").read_text()
    assert ("**2 of 10 run(s) were not produced from a clean tree** (their `env.json` records a git "
            "revision ending in `-dirty`): focal/gamma0.0_alpha0.75/seed1, sse/lambda0.5/seed0") in readme
    assert "Fake CPU 9000 (2 threads, AVX2)" in readme


def test_report_with_no_runs_marks_everything_missing(tmp_path):
    out = tmp_path / "report"
    build_report(tmp_path / "none", PARAMS, "synth", out)
    readme = (out / "README.md").read_text()
    assert "10 expected run(s) missing" in readme and "clean tree" not in readme
    assert "missing" in (out / "tables" / "focal.md").read_text()


def test_comparisons_are_holm_corrected_and_stated_only_when_resolved():
    from lossbench.report.tables import _verdict, compare

    # pair 1: diffs .10, .11, .09 -> mean .10, sd .01, t = .10 / (.01 / sqrt 3) = 17.32, df 2,
    #   p = 0.0033 <= .05 / 2: rejected at Holm's first step, interval at 97.5%:
    #   t(0.9875, 2) = 6.2053 -> half width 6.2053 * .01 / sqrt 3 = .0358 -> [6.4, 13.6] pp
    # pair 2: diffs .05, -.05, .02 -> p = 0.83 > .05: accepted, interval at 95%
    rows = compare([("a", "x", {0: .60, 1: .62, 2: .64}, "b", "y", {0: .50, 1: .51, 2: .55}),
                    ("c", "u", {0: .55, 1: .45, 2: .52}, "d", "v", {0: .50, 1: .50, 2: .50})])
    one, two = rows.to_dict("records")
    assert one["confidence"] == pytest.approx(0.975) and two["confidence"] == pytest.approx(0.95)
    assert (100 * one["diff_lo"], 100 * one["diff_hi"]) == pytest.approx((6.42, 13.58), abs=0.01)
    assert one["p_holm"] == pytest.approx(2 * 0.003316, abs=2e-5)
    assert _verdict(one) == "a (x) higher" and _verdict(two) == "not resolved"
    # the same first pair alone is tested at 95%: a narrower interval
    alone = compare([("a", "x", {0: .60, 1: .62, 2: .64}, "b", "y", {0: .50, 1: .51, 2: .55})])
    assert (100 * alone["diff_lo"][0], 100 * alone["diff_hi"][0]) == pytest.approx((7.52, 12.48), abs=0.01)
