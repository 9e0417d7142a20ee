"""The imbalance sweep report, from fabricated sweep runs (the helpers of conftest.py).

The fabricated sweep (:func:`make_points`) follows the design: the same scene (4 labelled objects per image, batch 4)
on canvases of 96, 192 and 320 px, 800 iterations, the positive share measured per point. Each point has a test set
of its own size; a run detects ``tp`` of its images (test mAP50 exactly ``tp / n_images``), seeds 0, 1, 2 detect
``tp - 10``, ``tp``, ``tp + 10``. True positives fall by 20 images per point; sse collapses at 320 px in seeds 0 and 2
(final val mAP50 0, below params' ``comparisons.collapse_below``; every other run ends at val 50%).
"""

import copy
import json
import math
import shutil

import numpy as np
import pandas as pd
import pytest
from scipy import stats as st

from lossbench.report.collect import ReportError
from lossbench.report.sweep import build_sweep_report, interaction_test

POINTS = {  # profile -> canvas, measured positive share, anchors / image, positive anchors / image, visible, test images
    "sweep_c96": (96, 0.018866, 1746, 32.94, 0.917, 220),
    "sweep_c192": (192, 0.004759, 6921, 32.94, 0.9815, 200),
    "sweep_c320": (320, 0.00175, 19206, 33.62, 0.9947, 180),
}
OBJECTS, BATCH, ITERS = 4.0, 4, 800
TP = {("focal", "default"): 150, ("focal", "best"): 140, ("ohem", "default"): 120, ("ohem", "best"): 125,
      ("sse", "default"): 100, ("sse", "best"): 100}
COLLAPSED = ("sweep_c320", "sse", (0, 2))  # these seeds detect nothing


def point_params(fab, profiles=tuple(POINTS)):
    return {**fab.PARAMS, "sweep": {"profiles": list(profiles), "seeds": [0, 1, 2],
                                    "runs": [{"family": f, "choose": c} for f in ("focal", "ohem", "sse")
                                             for c in ("default", "best")]}}


def tp_at(fab, i, profile, fam, role, seed):
    if (profile, fam) == COLLAPSED[:2] and seed in COLLAPSED[2]:
        return 0
    return fab.tp_of(TP[fam, role] - 20 * i, seed)


def make_points(fab, base):
    """``(runs/sweep, data)`` under ``base`` for :func:`point_params` and the selection of conftest's ``make_study``
    (focal val-best γ 1, ohem 'all', sse the paper default: its default and best runs are the same runs, trained
    twice)."""
    runs, data = base / "runs" / "sweep", base / "data"
    for i, (profile, (canvas, share, anchors, positives, visible, n_images)) in enumerate(POINTS.items()):
        (data / profile / "raw").mkdir(parents=True)
        (data / profile / "raw" / "stats.json").write_text(json.dumps({
            "anchors": {"image_size": canvas, "positive_share": share, "anchors_per_image": anchors,
                        "positives_per_image": positives},
            "splits": {"train": {"objects_per_image": {"mean": OBJECTS}, "visible_fraction": {"mean": visible}}}}))
        for fam in ("focal", "ohem", "sse"):
            for role, s in (("default", fab.DEFAULT[fam]), ("best", fab.BEST[fam])):
                for seed in (0, 1, 2):
                    # OHEM's clipped share grows point by point (1%, 2%, 3%, +0.3% per seed)
                    collapsed = (profile, fam) == COLLAPSED[:2] and seed in COLLAPSED[2]
                    fab.write_run(runs / profile / role / fam / f"seed{seed}", fam, s, seed, role,
                                  0.0 if collapsed else 0.5,
                                  tp_at(fab, i, profile, fam, role, seed), batch=BATCH, n_images=n_images,
                                  iters=ITERS, clipped=(0.01 * (i + 1) + 0.003 * seed) if fam == "ohem" else 0.0)
    return runs, data


@pytest.fixture
def sweep(study, fab):
    """``(runs, data, selection)`` of a fabricated sweep beside the fabricated study."""
    runs, data = make_points(fab, study.parent)
    return runs, data, study / "selection.json"


def md_rows(text):
    return [[c.strip() for c in line.strip().strip("|").split("|")] for line in text.splitlines()
            if line.startswith("|") and set(line) - set("|-: ")]


def test_sweep_report(sweep, fab, tmp_path):
    """Points named by their canvas, hand-worked means in points on each point's own test set, the duplicate sse runs
    merged, the measured span, and the training conditions in a table and in words."""
    runs, data, sel = sweep
    out = tmp_path / "sweep"
    res = build_sweep_report(runs, data, point_params(fab), sel, out)
    # 3 points x (focal 2 + ohem 2 + sse 1 setting: its default and best runs merged) x 3 seeds
    df = res["runs"]
    assert len(df) == 45
    assert df[df.family == "sse"]["role"].unique().tolist() == ["both"]
    assert df[df.family == "sse"]["run"].str.contains("/default/").all()
    rows = md_rows((out / "tables" / "sweep.md").read_text())
    assert rows[0] == ["canvas (px)", "objects / image", "batch", "positive anchors (%)",
                       "focal γ 2, α 0.25 (paper default)",
                       "focal γ 1, α 0.25 (val-best)", "ohem 3:1 (paper default)", "ohem all (val-best)",
                       "sse λ 0.5 (paper default = val-best)"]
    assert [r[:4] for r in rows[1:]] == [["96", "4", "4", "1.89"], ["192", "4", "4", "0.476"],
                                         ["320", "4", "4", "0.175"]]
    # 96 px: focal default 140, 150, 160 of 220 -> 68.2, its val-best 140 of 220 -> 63.6;
    # 320 px: 40 fewer of 180 -> 61.1; sse at 192 px: 80 of 200 -> 40.0
    assert rows[1][4].startswith("68.2 [") and rows[1][5].startswith("63.6 [")
    assert rows[3][4].startswith("61.1 [")
    assert rows[2][8].startswith("40.0 [")
    summ = res["summary"]
    assert summ.loc[0, "mean"] == pytest.approx(100 * 150 / 220)  # points, not fractions
    comp = res["comparisons"]
    assert comp["group"].tolist() == ["96 px"] * 3 + ["192 px"] * 3 + ["320 px"] * 3
    assert comp.loc[0, ["A", "B"]].tolist() == ["focal γ 2, α 0.25", "ohem 3:1"]
    assert comp.loc[0, "diff"] == pytest.approx(100 * 30 / 220)
    assert comp.loc[6, "diff"] == pytest.approx(100 * 30 / 180)
    for r in comp.itertuples():
        assert (r.verdict == "not resolved") == (r.lo <= 0 <= r.hi)
    readme = (out / "README.md").read_text()
    assert "sweep_mAP50_vs_positive_share.png" in readme and "1000 bootstrap replicates" in readme
    for r in comp.itertuples():
        seeds = "1 seed" if r.B.startswith("sse") and r.group == "320 px" else "3 seeds"  # sse collapsed in 2
        assert f"{r.A} vs {r.B} ({r.group}, {seeds})" in readme and f"**{r.verdict}**" in readme
    # the span comes from the measured shares: 0.018866 / 0.00175 = 10.78
    assert "from 1.89% (96 px) to 0.175% (320 px): a 10.8x span." in readme
    for ext in ("png", "pdf"):
        assert (out / "figures" / f"sweep_mAP50_vs_positive_share.{ext}").stat().st_size > 5000
    assert sorted(p.name for p in (out / "tables").iterdir()) == sorted(
        f"{n}.{e}" for n in ("sweep", "sweep_comparisons", "sweep_conditions", "sweep_interaction", "sweep_slopes")
        for e in ("md", "tex", "csv"))
    # training conditions: 4 objects per image x batch 4 = 16 per step, x 800 iterations; anchors from stats.json;
    # OHEM's clipped share per point, mean over seeds 0-2 (+0, +0.3, +0.6 %) and the largest
    cond = md_rows((out / "tables" / "sweep_conditions.md").read_text())
    assert cond[0][:10] == ["canvas (px)", "objects / image", "batch", "iterations", "objects per step",
                            "objects in all", "anchors / image", "positive anchors / image", "positive anchors (%)",
                            "objects visible (%)"]
    assert [r[:10] for r in cond[1:]] == [["96", "4", "4", "800", "16", "12,800", "1,746", "32.9", "1.89", "91.7"],
                                          ["192", "4", "4", "800", "16", "12,800", "6,921", "32.9", "0.476", "98.2"],
                                          ["320", "4", "4", "800", "16", "12,800", "19,206", "33.6", "0.175", "99.5"]]
    ohem = cond[0].index("ohem 3:1 (paper default)")
    assert [r[ohem] for r in cond[1:]] == ["1.3 (max 1.6)", "2.3 (max 2.6)", "3.3 (max 3.6)"]
    assert cond[1][cond[0].index("focal γ 2, α 0.25 (paper default)")] == "0.0 (max 0.0)"
    assert ("(4 labelled objects per image, batch 4: 16 labelled objects per training step, 12,800 per run) on a "
            "canvas of 96, 192, 320 px: positive exposure is the same at every point") in readme
    assert "(1,746, 6,921, 19,206 per image)" in readme
    assert "The gradient-norm clip (max_norm 20) acts on a share of steps measured per run" in readme
    assert "keep 91.7, 98.2, 99.5% of their pixels visible" in readme


def test_collapse_is_counted_not_averaged(sweep, fab, tmp_path):
    """sse collapses at 320 px in seeds 0 and 2 (val 0): the cell counts 2 of 3 beside the all-run mean; the figure,
    the comparisons and the interaction model use seed 1 only there; the comparisons give Fisher's test of the
    collapse counts, Holm over the two comparisons where a run collapsed."""
    runs, data, sel = sweep
    out = tmp_path / "sweep"
    res = build_sweep_report(runs, data, point_params(fab), sel, out)
    summ = res["summary"].set_index(["point", "family", "role"]).sort_index()
    sse = summ.loc[("320 px", "sse", "both")]
    # seeds 0, 1, 2 detect 0, 60, 0 of 180 test images (100 - 40 = 60 for seed 1)
    assert (sse["n"], sse["n_collapsed"]) == (3, 2)
    assert sse["mean"] == pytest.approx(100 * 60 / 180 / 3)
    assert sse["mean_ok"] == pytest.approx(100 * 60 / 180) and math.isnan(sse["lo_ok"])
    assert (summ["n_collapsed"].sum(), summ.loc[("192 px", "sse", "both"), "n_collapsed"]) == (2, 0)
    focal = summ.loc[("320 px", "focal", "default")]
    assert (focal["mean_ok"], focal["lo_ok"], focal["hi_ok"]) == (focal["mean"], focal["lo"], focal["hi"])
    rows = md_rows((out / "tables" / "sweep.md").read_text())
    assert rows[3][8].startswith("11.1 [0.0, ") and rows[3][8].endswith("]; 2 of 3 collapsed, the others 33.3")
    assert rows[2][8].startswith("40.0 [") and "collapsed" not in rows[2][8]
    comp = res["comparisons"].set_index(["group", "A", "B"]).sort_index()
    c = comp.loc[("320 px", "focal γ 2, α 0.25", "sse λ 0.5")]
    # over seed 1 only: focal 150 - 40 = 110 against sse 60 of 180
    assert (c["n"], c["seeds"], c["verdict"]) == (1, "1", "not resolved (one seed)")
    assert c["diff"] == pytest.approx(100 * 50 / 180)
    # Fisher, 0 of 3 against 2 of 3: tables with these margins have probabilities 3, 9, 3 / 15, so p = 6 / 15
    assert (c["collapsed_a"], c["n_a_all"], c["collapsed_b"], c["n_b_all"]) == (0, 3, 2, 3)
    assert c["p_collapse"] == pytest.approx(0.4) and c["p_collapse_holm"] == pytest.approx(0.8)
    other = comp.loc[("320 px", "focal γ 2, α 0.25", "ohem 3:1")]
    assert (other["n"], other["p_collapse"], other["p_collapse_holm"]) == (3, 1.0, 1.0)
    tests = res["interaction"].set_index("set")
    assert tests["runs"].tolist() == [25, 25] and tests["collapsed"].tolist() == [2, 2]
    readme = (out / "README.md").read_text()
    assert "2 of 45 runs collapsed: sse λ 0.5 at 320 px: 2 of 3." in readme
    assert ("focal γ 2, α 0.25 vs sse λ 0.5 (320 px, 1 seed): A − B = +27.8 points, no interval: **not resolved "
            "(one seed)**; collapsed 0 of 3 against 2 of 3, Fisher p 0.400, Holm p 0.800") in readme
    assert "- paper defaults (25 runs, 2 collapsed left out, 3 families): F(2, 19) = " in readme
    ctab = md_rows((out / "tables" / "sweep_comparisons.md").read_text())
    assert ctab[0][-2:] == ["collapsed A; B", "collapse Fisher p (Holm)"]
    assert ctab[8][-2:] == ["0 of 3; 2 of 3", "0.400 (0.800)"]
    # nothing collapsed: said so
    shutil.rmtree(runs / "sweep_c320")
    shutil.rmtree(data / "sweep_c320")
    build_sweep_report(runs, data, point_params(fab, ["sweep_c96", "sweep_c192"]), sel, tmp_path / "two")
    assert "No sweep run collapsed (30 runs)." in (tmp_path / "two" / "README.md").read_text()


def test_each_point_is_its_own_test_set(sweep, fab, tmp_path):
    """A point's intervals come from its own bootstrap: the 192 px point alone gives the same cells as within the whole
    sweep; alone, it is named by its canvas and its interaction test is not estimable (one share)."""
    runs, data, sel = sweep
    res = build_sweep_report(runs, data, point_params(fab), sel, tmp_path / "all")
    alone = build_sweep_report(runs, data, point_params(fab, ["sweep_c192"]), sel, tmp_path / "one")
    one = alone["summary"]
    both = res["summary"][res["summary"].profile == "sweep_c192"].reset_index(drop=True)
    assert one["point"].tolist() == ["192 px"] * len(one)
    for k in ("mean", "lo", "hi"):
        assert both[k].tolist() == pytest.approx(one[k].tolist(), abs=1e-12)
    assert alone["interaction"]["verdict"].tolist() == ["not estimable"] * 2
    assert "- paper defaults (9 runs, 3 families): **not estimable** (it needs" in (tmp_path / "one" / "README.md").read_text()


def test_every_interval_in_the_sweep_csvs_is_within_the_metrics_range(sweep, fab, tmp_path):
    """Means in [0, 100], differences in [-100, 100]; sse at 320 px (0, 60, 0 of 180 test images: mean 11.1 points, a
    t-interval on 2 df reaching far below 0) ends exactly at 0."""
    runs, data, sel = sweep
    out = tmp_path / "out"
    build_sweep_report(runs, data, point_params(fab), sel, out)
    summ = pd.read_csv(out / "tables" / "sweep.csv")
    assert ((summ["lo"] >= 0) & (summ["hi"] <= 100) & (summ["lo"] <= summ["mean"])
            & (summ["mean"] <= summ["hi"])).all()
    sse = summ[(summ.profile == "sweep_c320") & (summ.family == "sse")].iloc[0]
    assert sse["mean"] == pytest.approx(100 * 60 / 540, abs=1e-6) and sse["lo"] == 0.0
    ok = summ.dropna(subset=["lo_ok"])
    assert len(ok) == len(summ) - 1  # sse at 320 px: one run did not collapse, no interval
    assert ((ok["lo_ok"] >= 0) & (ok["hi_ok"] <= 100) & (ok["lo_ok"] <= ok["mean_ok"])
            & (ok["mean_ok"] <= ok["hi_ok"])).all()
    comp = pd.read_csv(out / "tables" / "sweep_comparisons.csv").dropna(subset=["lo"])
    assert len(comp) == 7 and ((comp["lo"] >= -100) & (comp["hi"] <= 100)).all()
    assert "[0.0, " in md_rows((out / "tables" / "sweep.md").read_text())[3][-1]


def test_the_span_is_the_measured_one(sweep, fab, tmp_path):
    """The report states the span of the shares in the points' stats.json, and a span short of 10x as such."""
    runs, data, sel = sweep
    stats = data / "sweep_c320" / "raw" / "stats.json"
    rec = json.loads(stats.read_text())
    rec["anchors"]["positive_share"] = 0.0025
    stats.write_text(json.dumps(rec))
    build_sweep_report(runs, data, point_params(fab), sel, tmp_path / "out")
    readme = (tmp_path / "out" / "README.md").read_text()
    assert "from 1.89% (96 px) to 0.25% (320 px): a 7.5x span, short of the 10x the sweep is designed for." in readme


def test_occlusion_held_fixed_and_exposure_within_tolerance(sweep, fab, tmp_path):
    """Occlusion-free points (every object 100% visible) where the 96 px point dropped a few objects for lack of room
    (3.987 per image, 15.95 per step against 16: 0.33% fewer, inside the 1% tolerance) and distractors (1.95 against
    2): exposure is said to be the same, with the measured counts; occlusion is said to be the same; the distractors
    are named. At 3.9 per image (2.5% fewer) exposure is not the same."""
    runs, data, sel = sweep
    for profile, objects, distractors in (("sweep_c96", 3.987, 1.95), ("sweep_c192", 4.0, 2.0),
                                          ("sweep_c320", 4.0, 2.0)):
        stats = data / profile / "raw" / "stats.json"
        rec = json.loads(stats.read_text())
        rec["splits"]["train"] = {"objects_per_image": {"mean": objects}, "visible_fraction": {"mean": 1.0},
                                  "distractors_per_image": distractors}
        stats.write_text(json.dumps(rec))
    build_sweep_report(runs, data, point_params(fab), sel, tmp_path / "out")
    readme = (tmp_path / "out" / "README.md").read_text()
    assert ("(4 labelled objects per image, batch 4: 16 labelled objects per training step, 12,800 per run) on a "
            "canvas of 96, 192, 320 px: positive exposure is the same at every point (measured 3.987, 4, 4 labelled "
            "objects per image: within 1%); what grows") in readme
    assert "Occlusion is the same at every point: the labelled objects keep 100.0% of their pixels visible" in readme
    assert "more crowded" not in readme
    assert "Unlabelled distractor shapes per image: 1.95, 2.00, 2.00" in readme
    cond = md_rows((tmp_path / "out" / "tables" / "sweep_conditions.md").read_text())
    col = cond[0].index("distractors / image")
    assert [(r[1], r[4], r[cond[0].index("objects visible (%)")], r[col]) for r in cond[1:]] == [
        ("3.99", "15.9", "100.0", "1.95"), ("4", "16", "100.0", "2.00"), ("4", "16", "100.0", "2.00")]

    stats = data / "sweep_c96" / "raw" / "stats.json"
    rec = json.loads(stats.read_text())
    rec["splits"]["train"]["objects_per_image"]["mean"] = 3.9
    stats.write_text(json.dumps(rec))
    build_sweep_report(runs, data, point_params(fab), sel, tmp_path / "out2")
    readme = (tmp_path / "out2" / "README.md").read_text()
    assert "positive exposure is not held fixed" in readme and "exposure is the same" not in readme


def test_unchanged_runs_give_a_byte_identical_sweep_report(sweep, fab, tmp_path, monkeypatch):
    runs, data, sel = sweep
    build_sweep_report(runs, data, point_params(fab), sel, tmp_path / "a")
    moved = tmp_path / "elsewhere"
    shutil.copytree(runs.parent.parent, moved)
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    build_sweep_report(moved / "runs" / "sweep", moved / "data", point_params(fab),
                       moved / "runs" / "selection.json", tmp_path / "b")
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file())
    assert len(files) == 5 * 3 + 2 + 2  # tables, figures, README, provenance
    assert [str(f) for f in files if (tmp_path / "a" / f).read_bytes() != (tmp_path / "b" / f).read_bytes()] == []


def test_sweep_refuses_a_best_that_is_not_the_selection(sweep, fab, tmp_path):
    runs, data, sel = sweep
    s = json.loads(sel.read_text())
    s["families"]["focal"]["best"] = {"gamma": 5.0, "alpha": 0.25}
    sel.write_text(json.dumps(s))
    with pytest.raises(ReportError, match=r"sweep_c96/best/focal/seed0/metrics.json: setting is \{'gamma': 1.0, "
                                          r"'alpha': 0.25\}, but families.focal.best of .*selection.json is "
                                          r"\{'gamma': 5.0"):
        build_sweep_report(runs, data, point_params(fab), sel, tmp_path / "out")


def _without(fab, family, choose):
    params = copy.deepcopy(point_params(fab))
    params["sweep"]["runs"].remove({"family": family, "choose": choose})
    return params


def test_sweep_runs_must_hold_the_default_and_a_best_that_differs(sweep, fab, tmp_path):
    runs, data, sel = sweep
    with pytest.raises(ReportError, match=r"sweep.runs lacks \{family: ohem, choose: best\}, but the val-best "
                                          r"in .*selection.json \(\{\"neg_pos_ratio\": \"all\"\}\) is not"):
        build_sweep_report(runs, data, _without(fab, "ohem", "best"), sel, tmp_path / "out")
    with pytest.raises(ReportError, match=r"sweep.runs lacks \{family: sse, choose: default\}"):
        build_sweep_report(runs, data, _without(fab, "sse", "default"), sel, tmp_path / "out")
    # sse's val-best is its paper default: its best entry may be left out
    res = build_sweep_report(runs, data, _without(fab, "sse", "best"), sel, tmp_path / "out")
    assert res["runs"][res["runs"].family == "sse"]["role"].unique().tolist() == ["default"]


def test_sweep_duplicates_must_agree(sweep, fab, tmp_path):
    runs, data, sel = sweep
    f = runs / "sweep_c192" / "best" / "sse" / "seed1" / "metrics.json"
    rec = json.loads(f.read_text())
    rec["metrics"]["test"]["mAP50"] += 1e-6
    f.write_text(json.dumps(rec))
    with pytest.raises(ReportError, match=r"sweep_c192/default/sse/seed1 and .*sweep_c192/best/sse/seed1 .*disagree"):
        build_sweep_report(runs, data, point_params(fab), sel, tmp_path / "out")


def test_sweep_needs_every_run_and_the_positive_share(sweep, fab, tmp_path):
    """A missing share or run is an error naming the file or the run's folder, and no report is written."""
    runs, data, sel = sweep
    stats = data / "sweep_c192" / "raw" / "stats.json"
    kept = stats.read_text()
    stats.write_text(json.dumps({"anchors": {"image_size": 192}}))
    with pytest.raises(ReportError, match=r"sweep_c192/raw/stats.json: anchors.positive_share"):
        build_sweep_report(runs, data, point_params(fab), sel, tmp_path / "out")
    stats.write_text(kept)
    (runs / "sweep_c320" / "best" / "ohem" / "seed2" / "metrics.json").unlink()
    with pytest.raises(ReportError, match=r"missing run: .*sweep_c320/best/ohem/seed2 has no metrics.json"):
        build_sweep_report(runs, data, point_params(fab), sel, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_cli_sweep_report_exit_codes(sweep, fab, tmp_path, capsys):
    import yaml

    from lossbench.cli import main

    runs, data, sel = sweep
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(point_params(fab)))
    args = ["sweep-report", "--runs", str(runs), "--data", str(data), "--params", str(params),
            "--selection", str(sel), "--out", str(tmp_path / "out")]
    assert main(args) == 0 and "45 runs" in capsys.readouterr().out
    params.write_text(yaml.safe_dump(_without(fab, "focal", "best")))
    assert main(args) == 2 and "sweep.runs lacks {family: focal, choose: best}" in capsys.readouterr().err


# --- the family x share interaction (lossbench.report.sweep.interaction_test) ---------------------------------------

def _two_by_two(b_at_1):
    """Families A and B, x = 0 and 1, two runs per cell at the cell mean -/+ 1: A 10 -> 20, B 30 -> ``b_at_1``."""
    cells = [("A", 0, 10), ("A", 1, 20), ("B", 0, 30), ("B", 1, b_at_1)]
    y = [m + e for _, _, m in cells for e in (-1, 1)]
    fam = [f for f, _, _ in cells for _ in (0, 1)]
    x = [v for _, v, _ in cells for _ in (0, 1)]
    return y, fam, x


def test_interaction_parallel_lines_give_f_zero():
    """Exact parallel lines (both slopes 10): the additive model fits as well as the full one, F = 0, p = 1.
    By hand: RSS_full = 8 x 1² = 8 on 8 - 4 = 4 df, s² = 2; Sxx = 4 x 0.5² = 1 per family, se = sqrt 2;
    t(0.975, 4) = 2.7764, half width 3.9265: each slope 10 [6.0735, 13.9265]."""
    res = interaction_test(*_two_by_two(40))
    assert (res["df1"], res["df2"], res["n"]) == (1, 4, 8)
    assert res["rss_full"] == pytest.approx(8.0) and res["rss_add"] == pytest.approx(8.0)
    assert res["F"] == pytest.approx(0.0, abs=1e-9) and res["p"] == pytest.approx(1.0)
    for fam in ("A", "B"):
        s = res["slopes"][fam]
        assert (s["slope"], s["se"]) == pytest.approx((10.0, math.sqrt(2)))
        assert (s["lo"], s["hi"]) == pytest.approx((6.0735, 13.9265), abs=1e-4)
        assert s["n"] == 4


def test_interaction_non_parallel_by_hand_and_by_an_independent_fit():
    """A rises by 10, B stays at 30. By hand (2 x 2 cells, 2 runs each): the interaction contrast is 10 - 0, its sum of
    squares n c² / 4 = 2 x 100 / 4 = 50, F = 50 / (8 / 4) = 25 on (1, 4) df. Independently: residual sums of squares of
    the two design matrices by numpy.linalg.lstsq."""
    y, fam, x = _two_by_two(30)
    res = interaction_test(y, fam, x)
    assert res["F"] == pytest.approx(25.0)
    assert res["p"] == pytest.approx(st.f.sf(25.0, 1, 4)) and res["p"] == pytest.approx(0.00749, abs=1e-5)
    assert res["slopes"]["B"]["slope"] == pytest.approx(0.0, abs=1e-12)
    y, a = np.array(y, float), np.array([f == "A" for f in fam], float)
    xv = np.array(x, float)
    full = np.column_stack([a, 1 - a, a * xv, (1 - a) * xv])
    additive = np.column_stack([a, 1 - a, xv])
    rss = [float(np.sum((y - m @ np.linalg.lstsq(m, y, rcond=None)[0]) ** 2)) for m in (full, additive)]
    assert res["F"] == pytest.approx((rss[1] - rss[0]) / (rss[0] / 4))


def test_interaction_matches_an_independent_fit_on_an_unbalanced_case():
    """Three families with their own numbers of runs and shares: F, p and each slope's standard error against an
    independent computation (lstsq residual sums of squares; per-family regressions with the pooled variance)."""
    rng = np.random.default_rng(3)
    fam = ["f"] * 7 + ["g"] * 9 + ["h"] * 6
    x = np.r_[rng.choice([0.5, 1.2, 1.7], 7), rng.choice([0.5, 1.2, 1.7], 9), [0.5, 0.5, 1.2, 1.7, 1.7, 1.7]]
    x[:3], x[7:10] = [0.5, 1.2, 1.7], [0.5, 1.2, 1.7]  # every family sees at least two shares
    y = 60 + np.select([np.array(fam) == "f", np.array(fam) == "g"], [-5.0, -12.0], 3.0) * x + rng.normal(0, 2, 22)
    res = interaction_test(y, fam, x)
    onehot = np.array([[f == g for g in "fgh"] for f in fam], float)
    full = np.hstack([onehot, onehot * x[:, None]])
    additive = np.hstack([onehot, x[:, None]])
    rss_full, rss_add = (float(np.linalg.lstsq(m, y, rcond=None)[1][0]) for m in (full, additive))
    f = ((rss_add - rss_full) / 2) / (rss_full / (22 - 6))
    assert (res["df1"], res["df2"]) == (2, 16)
    assert res["F"] == pytest.approx(f) and res["p"] == pytest.approx(st.f.sf(f, 2, 16))
    assert res["p"] < 0.01  # slopes -5, -12, +3 with noise sd 2
    s2 = rss_full / 16
    for g in "fgh":
        m = np.array(fam) == g
        slope = np.polyfit(x[m], y[m], 1)[0]
        se = math.sqrt(s2 / np.sum((x[m] - x[m].mean()) ** 2))
        assert (res["slopes"][g]["slope"], res["slopes"][g]["se"]) == pytest.approx((slope, se))
        half = st.t.ppf(0.975, 16) * se
        assert (res["slopes"][g]["lo"], res["slopes"][g]["hi"]) == pytest.approx((slope - half, slope + half))


def test_interaction_not_estimable():
    """One share: no slope, nothing estimable; one family: its slope, but no interaction to test."""
    one_share = interaction_test([1.0, 2.0, 3.0, 4.0], ["A", "A", "B", "B"], [1.0] * 4)
    assert math.isnan(one_share["F"]) and math.isnan(one_share["slopes"]["A"]["slope"])
    one_family = interaction_test([1.0, 2.0, 3.5, 4.0], ["A"] * 4, [0.0, 1.0, 2.0, 3.0])
    assert math.isnan(one_family["F"]) and one_family["df1"] == 0
    assert one_family["slopes"]["A"]["slope"] == pytest.approx(np.polyfit([0, 1, 2, 3], [1, 2, 3.5, 4], 1)[0])


def test_the_report_tests_the_interaction_on_the_runs(sweep, fab, tmp_path):
    """The report's F-tests are those of the runs' test mAP50 (points) on family x log10(1 / measured share): for the
    paper defaults and the val-bests (sse's runs in both), Holm-corrected together, each in the README."""
    runs, data, sel = sweep
    out = tmp_path / "out"
    res = build_sweep_report(runs, data, point_params(fab), sel, out)
    tests, slopes = res["interaction"].set_index("set"), res["slopes"]
    for name, roles in (("paper defaults", ("default",)), ("val-bests", ("best",))):
        y, fam, x = [], [], []
        for i, (profile, point) in enumerate(POINTS.items()):
            for f in ("focal", "ohem", "sse"):
                role = "default" if f == "sse" else roles[0]
                for seed in (0, 1, 2):
                    if (profile, f) == COLLAPSED[:2] and seed in COLLAPSED[2]:
                        continue  # collapsed: counted apart, not in the model
                    y.append(100 * tp_at(fab, i, profile, f, role, seed) / point[5])
                    fam.append(f)
                    x.append(-math.log10(point[1]))
        ref = interaction_test(y, fam, x)
        assert (tests.loc[name, "runs"], tests.loc[name, "df1"], tests.loc[name, "df2"]) == (25, 2, 19)
        assert tests.loc[name, "F"] == pytest.approx(ref["F"]) and tests.loc[name, "p"] == pytest.approx(ref["p"])
        got = slopes[slopes["set"] == name].set_index("family")["slope"]
        assert got.to_dict() == pytest.approx({f: ref["slopes"][f]["slope"] for f in ("focal", "ohem", "sse")})
    p = tests["p"].to_numpy()
    assert tests["p_holm"].to_numpy() == pytest.approx(np.minimum(1, np.maximum.accumulate(
        np.sort(p) * [2, 1]))[np.argsort(np.argsort(p))])
    readme = (out / "README.md").read_text()
    for r in tests.reset_index().itertuples():
        assert (f"- {r.set} (25 runs, 2 collapsed left out, 3 families): F(2, 19) = {r.F:.2f}, p = {r.p:.3f}, Holm p {r.p_holm:.3f}: "
                f"**{r.verdict}**") in readme
    sse = slopes[(slopes["set"] == "val-bests") & (slopes["family"] == "sse")].iloc[0]
    assert sse["role"] == "both" and f"sse λ 0.5 {sse['slope']:+.1f} [" in readme
    rows = md_rows((out / "tables" / "sweep_slopes.md").read_text())
    assert rows[0] == ["runs of", "family", "setting", "runs", "slope (pts per 10x rarer)"] and len(rows) == 7


# --- the sweep's paired comparisons (lossbench.report.sweep.compare) ------------------------------------------------

def test_verdict_is_not_resolved_exactly_when_the_holm_interval_contains_zero():
    from lossbench.report.sweep import compare

    # no image noise (a constant bootstrap): the combined interval is the paired t-interval.
    # pair 1: diffs .10, .11, .09 -> mean .10, sd .01, t = .10 / (.01 / sqrt 3) = 17.32, df 2,
    #   p = 0.0033 <= .05 / 2: Holm rejects at its first step, interval at 97.5%:
    #   t(0.9875, 2) = 6.2053 -> half width 6.2053 * .01 / sqrt 3 = .0358 -> [.0642, .1358]
    # pair 2: diffs .05, -.05, .02 -> p = 0.85 > .05: accepted, interval at 95% contains 0
    values = np.array([.60, .62, .64, .50, .51, .55, .55, .45, .52, .50, .50, .50])
    arms = [{s: 3 * k + s for s in range(3)} for k in range(4)]
    pairs = [("g", "A1", arms[0], "B1", arms[1]), ("g", "A2", arms[2], "B2", arms[3])]
    one, two = compare(pairs, values, np.zeros((2, 12))).to_dict("records")
    assert one["level"] == pytest.approx(0.975) and two["level"] == pytest.approx(0.95)
    assert (one["lo"], one["hi"]) == pytest.approx((0.0642, 0.1358), abs=1e-4)
    assert one["p_holm"] == pytest.approx(2 * 0.003316, abs=2e-5)
    assert one["verdict"] == "A > B"
    assert two["lo"] < 0 < two["hi"] and two["verdict"] == "not resolved"
    # the same pair reversed reads A < B
    rev = compare([("g", "B1", arms[1], "A1", arms[0])], values, np.zeros((2, 12)))
    assert rev.loc[0, "hi"] < 0 and rev.loc[0, "verdict"] == "A < B"
    # bounded to [-limit, limit]: pair 1 alone is tested at 95%: t(0.975, 2) = 4.3027, half width .0248 ->
    # [.0752, .1248], cut at 0.1; the verdict unchanged
    cut = compare(pairs[:1], values, np.zeros((2, 12)), limit=0.1).iloc[0]
    assert (cut["lo"], cut["hi"], cut["verdict"]) == (pytest.approx(0.0752, abs=1e-4), 0.1, "A > B")
    # with image noise: the verdict follows the Holm-level interval, for random pairs
    rng = np.random.default_rng(1)
    seen = set()
    for _ in range(40):
        vals = rng.normal(0.5, 0.02, size=12) + np.repeat(rng.normal(0, 0.03, size=4), 3)
        boot = rng.normal(0, 0.005, size=(200, 12))
        for r in compare(pairs, vals, boot).itertuples():
            assert (r.verdict == "not resolved") == (r.lo <= 0 <= r.hi)
            assert (r.verdict == "A > B") == (r.lo > 0)
            seen.add(r.verdict)
    assert seen == {"A > B", "A < B", "not resolved"}  # every case was met


def test_a_comparison_on_one_seed_is_not_resolved_and_not_counted_by_holm():
    from lossbench.report.sweep import compare

    values = np.array([0.5, 0.9, 0.1, 0.6, 0.7, 0.2, 0.3])
    boot = np.tile(values, (10, 1))
    # A and B share seed 1 only: a difference of +0.8 with no interval; C vs D has 2 seeds
    out = compare([("g", "A", {0: 0, 1: 1}, "B", {1: 2}), ("g", "C", {0: 3, 1: 4}, "D", {0: 5, 1: 6})],
                  values, boot)
    one, two = out.iloc[0], out.iloc[1]
    assert one["verdict"] == "not resolved (one seed)" and one["n"] == 1
    assert one["diff"] == pytest.approx(0.8) and np.isnan(one["lo"]) and np.isnan(one["p_holm"])
    # Holm's m counts only the comparison that has an interval: level 1 - 0.05 / 1
    assert two["level"] == pytest.approx(0.95)
    with pytest.raises(ReportError, match="A vs B: no common seed"):
        compare([("g", "A", {0: 0}, "B", {1: 2})], values, boot)


def test_the_remedies_the_sweep_leaves_out_are_named(sweep, fab, tmp_path):
    runs, data, sel = sweep
    params = {**point_params(fab), "remedies": {"families": ["ghm", "qfl"]}}
    build_sweep_report(runs, data, params, sel, tmp_path / "sweep")
    text = (tmp_path / "sweep" / "README.md").read_text()
    # 2 remedies x 3 points x 3 seeds
    assert "Not in the sweep: the later remedies (ghm, qfl; `make remedies`)" in text and "add 18 runs" in text
    build_sweep_report(runs, data, point_params(fab), sel, tmp_path / "sweep2")
    assert "Not in the sweep" not in (tmp_path / "sweep2" / "README.md").read_text()
