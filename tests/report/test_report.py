"""The profile report, built from fabricated runs (conftest.py) and checked against hand-worked values."""

import json
import math
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats as st

from lossbench.report.build import build_report
from lossbench.report.collect import ReportError


def md_rows(text: str) -> list[list[str]]:
    """The cells of every row of the Markdown tables in ``text`` (header rows included)."""
    return [[c.strip() for c in line.strip().strip("|").split("|")] for line in text.splitlines()
            if line.startswith("|") and set(line) - set("|-: ")]


def read(built, name: str) -> str:
    return (built["out"] / name).read_text()


def test_val_chooses_and_the_table_marks_the_val_best(built):
    # focal: γ 1 has the highest val mean (0.61, 0.62, 0.63 -> 0.62 vs γ 2's 0.55), γ 2 the highest
    # test mean: the selection follows val
    sel = built["res"]["selection"]["families"]
    assert sel["focal"]["best"] == {"gamma": 1.0, "alpha": 0.25}
    assert sel["focal"]["val_means"]["gamma1.0_alpha0.25"] == pytest.approx(0.62, abs=1e-12)
    s = built["res"]["summary"].set_index("condition")
    assert s.loc["focal/gamma2.0_alpha0.25", "test_mean"] > s.loc["focal/gamma1.0_alpha0.25", "test_mean"]
    rows = md_rows(read(built, "tables/focal.md"))
    assert rows[0] == ["setting (γ, α)", "seeds (val / test)", "val mAP50 [t]", "test mAP50 [seeds + images]",
                       "test AP", "clipped steps"]
    # γ 1 val: mean 0.62, sd 0.01, t(0.975, 2) = 4.302653 -> half 4.302653 * 0.01 / sqrt 3 = 0.02484
    # γ 1 test: 148, 150, 152, 148, 150 of 200 images -> 74.8; AP = mAP50 / 2 -> 37.4
    assert rows[2][:3] == ["γ 1, α 0.25 ★", "3 / 5", "62.0 [59.5, 64.5]"]
    assert rows[2][3].startswith("74.8 [") and rows[2][4:] == ["37.4", "1.0"]
    assert rows[3][:2] == ["γ 2, α 0.25 †", "3 / 5"] and rows[3][3].startswith("94.8 [")
    assert [r[0] for r in rows[1:] if "★" in r[0]] == ["γ 1, α 0.25 ★"]
    assert md_rows(read(built, "tables/sse.md"))[2][0] == "λ 0.5 ★†"  # val-best is the default
    assert "Table 1b" in read(built, "README.md") and "Table 1a" not in read(built, "README.md")


def test_test_interval_matches_an_independent_bootstrap(built, fab):
    # ohem 'all', seeds 0-4. On bootstrap resample b (bootstrap_map's documented draws) a run's
    # mAP50 is the share of drawn images among its true-positive images.
    draws = np.random.default_rng(0).integers(0, fab.N_IMAGES, size=(1000, fab.N_IMAGES))
    seeds = [0, 1, 2, 3, 4]
    x = np.array([fab.tp_of(122, s) / fab.N_IMAGES for s in seeds])
    boot = np.stack([np.isin(draws, fab.tp_images(fab.tp_of(122, s), s)).mean(axis=1) for s in seeds], axis=1)
    se = math.sqrt(x.var(ddof=1) / 5 + boot.mean(axis=1).var(ddof=1))
    half = st.t.ppf(0.975, 4) * se
    r = built["res"]["summary"].set_index("condition").loc["ohem/ratioall"]
    assert r["n"] == 5 and r["test_mean"] == pytest.approx(x.mean(), abs=1e-12)
    assert (r["test_lo"], r["test_hi"]) == pytest.approx((x.mean() - half, x.mean() + half), abs=1e-9)


def test_duplicate_extra_runs_are_merged_once(built):
    # sse's val-best is its paper default: extra/default and extra/best train the same seeds 3, 4
    df = built["res"]["runs"]
    sse = df[df.condition == "sse/lambda0.5"]
    assert sse["seed"].tolist() == [0, 1, 2, 3, 4]
    assert sse["run"].tolist()[3:] == ["extra/default/sse/seed3", "extra/default/sse/seed4"]
    # 10 settings x 3 seeds + 3 families x 2 roles x 2 seeds - 2 duplicates + 3 x 3 prior off
    assert len(df) == 30 + 12 - 2 + 9


def test_disagreeing_duplicates_raise_naming_both(study, tmp_path, fab):
    f = study / "extra" / "best" / "sse" / "seed3" / "metrics.json"
    rec = json.loads(f.read_text())
    rec["metrics"]["test"]["mAP50"] += 1e-10  # within 1e-9: one run
    f.write_text(json.dumps(rec))
    build_report(study, fab.PARAMS, "synth", tmp_path / "ok", study / "selection.json")
    rec["metrics"]["test"]["mAP50"] += 1e-6
    f.write_text(json.dumps(rec))
    with pytest.raises(ReportError, match=r"extra/default/sse/seed3 and .*extra/best/sse/seed3 .*disagree"):
        build_report(study, fab.PARAMS, "synth", tmp_path / "bad", study / "selection.json")


@pytest.mark.parametrize("gone", ["ohem/ratio3/seed1", "prior_off/focal/seed2", "extra/best/ohem/seed4"])
def test_a_missing_run_raises_naming_its_folder(study, tmp_path, gone, fab):
    (study / gone / "metrics.json").unlink()
    with pytest.raises(ReportError, match=f"missing run: .*{gone}"):
        build_report(study, fab.PARAMS, "synth", tmp_path / "report", study / "selection.json")
    assert not (tmp_path / "report").exists()


def test_a_run_that_contradicts_its_folder_raises(study, tmp_path, fab):
    f = study / "extra" / "best" / "focal" / "seed3" / "metrics.json"
    rec = json.loads(f.read_text())
    rec["setting"] = {"gamma": 2.0, "alpha": 0.25}  # the paper default, not the val-best
    f.write_text(json.dumps(rec))
    with pytest.raises(ReportError, match="extra/best/focal/seed3/metrics.json: setting is"):
        build_report(study, fab.PARAMS, "synth", tmp_path / "report", study / "selection.json")


def test_stale_records_raise(study, tmp_path, fab):
    fab.write_records(study / "ohem" / "ratio1" / "seed0" / "test_records.npz", np.arange(5))
    with pytest.raises(ReportError, match=r"ratio1/seed0/test_records.npz: mAP50 from the records is 0.025"):
        build_report(study, fab.PARAMS, "synth", tmp_path / "report", study / "selection.json")


def test_a_selection_file_that_differs_raises_naming_both(study, tmp_path, fab):
    path = study / "selection.json"
    sel = json.loads(path.read_text())
    sel["families"]["focal"]["best"] = {"gamma": 2.0, "alpha": 0.25}
    path.write_text(json.dumps(sel))
    with pytest.raises(ReportError, match=r"selection.json: families.focal.best is \{\"gamma\": 2.0, "
                                          r"\"alpha\": 0.25\}, but the runs select \{\"gamma\": 1.0"):
        build_report(study, fab.PARAMS, "synth", tmp_path / "report", path)
    path.unlink()
    with pytest.raises(ReportError, match="does not exist"):
        build_report(study, fab.PARAMS, "synth", tmp_path / "report", path)


def test_comparisons_one_holm_family_with_verdicts_from_the_intervals(built):
    comp = built["res"]["comparisons"]
    # within: 3 + 2 + 2; val-best across 3; paper default across 3; prior init 3
    assert comp["group"].value_counts().to_dict() == {
        "within focal": 3, "within ohem": 2, "within sse": 2, "val-best across families": 3,
        "paper default across families": 3, "prior init": 3}
    for r in comp.itertuples():
        assert (r.verdict == "not resolved") == (r.lo <= 0 <= r.hi)
        assert (r.verdict != "not resolved") == (r.p_holm <= 0.05)
        assert r.level >= 0.95 and r.n == (5 if "across" in r.group else 3)
    # focal γ 5 vs γ 2: 6 vs 190 true positives (nested image sets) -> resolved, A < B
    g5 = comp[comp.A == "focal γ 5, α 0.25"].iloc[0]
    assert g5["diff"] == pytest.approx(-184 / 200) and g5["verdict"] == "A < B"
    # ohem all vs 3: 2 more images in every seed -> +1.0 point, not resolved
    ohem = comp[comp.A == "ohem all (val-best)"].iloc[0]
    assert ohem["diff"] == pytest.approx(0.01) and ohem["verdict"] == "not resolved"
    # README: every verdict verbatim, and no claim the table does not make
    readme = read(built, "README.md")
    table = md_rows(read(built, "tables/comparisons.md"))
    assert table[0][-1] == "verdict"
    for row, r in zip(table[1:], comp.itertuples()):
        assert row[-1] == r.verdict
        assert f"{r.A} vs {r.B} ({r.group}, {r.n} seeds)" in readme
        line = next(x for x in readme.splitlines() if f"{r.A} vs {r.B} ({r.group}" in x)
        assert line.endswith(f"**{r.verdict}**")


def test_verdict_is_not_resolved_exactly_when_the_holm_interval_contains_zero():
    from lossbench.report.tables import compare

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
    from lossbench.report.tables import compare

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


def test_prior_off_and_calibration_tables(built):
    # prior on, seeds 0-2: 188, 190, 192 of 200 -> 95.0; off: 30 fewer -> 80.0; on − off +15.0
    prior = md_rows(read(built, "tables/prior_off.md"))
    assert prior[1][:3] == ["focal", "γ 2, α 0.25", "3"]
    assert prior[1][3].startswith("95.0 [") and prior[1][4].startswith("80.0 [")
    assert prior[1][5].startswith("+15.0 [") and prior[1][6] == "not resolved"
    # every val curve gains 0.01 over the last quarter (450 -> 600): +1.0 point, a plateau;
    # ohem 3:1 final val 0.49, 0.50, 0.51, 0.49, 0.50 -> 49.8 < 50
    cal = md_rows(read(built, "tables/calibration.md"))
    assert cal[0][-1] == "≥ 50%"
    by = {(r[0], r[1]): r for r in cal[1:]}
    assert set(by) == {("focal", "val-best"), ("focal", "paper default"), ("ohem", "paper default"),
                       ("ohem", "val-best"), ("sse", "val-best = paper default")}
    assert by["ohem", "paper default"][3:] == ["5", "+1.0 [+1.0, +1.0]", "yes", "49.8 [48.8, 50.8]", "no"]
    assert by["focal", "val-best"][-1] == "yes"
    clip = md_rows(read(built, "tables/clipping.md"))
    assert ["focal", "γ 2, α 0.25 (prior off)", "3", "20", "1.0", "1.0"] in clip


def test_calibration_checks_the_curve():
    from lossbench.report.tables import gain_last_quarter

    curve = [(150, 0.40), (300, 0.45), (450, 0.48), (600, 0.50)]
    assert gain_last_quarter(curve, 0.50, "run") == pytest.approx(0.02)
    with pytest.raises(ReportError, match="run: the last val_curve point"):
        gain_last_quarter(curve, 0.51, "run")
    with pytest.raises(ReportError, match="no point near 75%"):
        gain_last_quarter([(150, 0.4), (600, 0.5)], 0.5, "run")


def test_readme_states_the_design(built):
    readme = read(built, "README.md")
    for phrase in ("highest mean val mAP50 over seeds 0,1,2", "the test split never chooses",
                   "also seeds 3,4", "1000 bootstrap", "resampling seed 0", "one Holm family",
                   "**SSD hard negative mining**: val-best all", "**On the grid's edge**: all is the highest",
                   "no λ_coord, no √w/√h", "P(background) = 1 − π", "`obj_target: iou`",
                   "values in these runs: 20", "(target 50%: not met)"):
        assert phrase in readme, phrase
    s = built["res"]["summary"].set_index("condition").loc["focal/gamma1.0_alpha0.25"]
    assert (f"test mAP50 {100 * s.test_mean:.1f}% [{100 * s.test_lo:.1f}, {100 * s.test_hi:.1f}] "
            "over 5 seeds") in readme
    tex = read(built, "tables/focal.tex")
    assert r"\toprule" in tex and r"\caption{" in tex and r"$\gamma$ 1, $\alpha$ 0.25 $\star$" in tex
    assert r"$\gamma$ 2, $\alpha$ 0.25 \dag{}" in tex
    assert pd.read_csv(built["out"] / "tables" / "comparisons.csv")["verdict"].notna().all()


def test_unchanged_runs_give_byte_identical_reports(built, tmp_path, monkeypatch, fab):
    # another build later (matplotlib dates a PDF from SOURCE_DATE_EPOCH when set), from the same
    # runs in another folder: every file identical
    moved = tmp_path / "elsewhere" / "runs"
    shutil.copytree(built["runs"], moved)
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    build_report(moved, fab.PARAMS, "synth", tmp_path / "b", moved / "selection.json")
    a = built["out"]
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(tmp_path / "b") for p in (tmp_path / "b").rglob("*") if p.is_file())
    # 7 tables x 3 formats, 6 figures x 2, runs.csv, README, provenance
    assert len(files) == 21 + 12 + 3
    assert [str(f) for f in files if (a / f).read_bytes() != (tmp_path / "b" / f).read_bytes()] == []
    for name in ("ablation_mAP50", "cross_family_mAP50", "calibration_val_mAP50", "training_curves",
                 "loss_shares", "focal_loss_fig1"):
        assert (a / "figures" / f"{name}.png").stat().st_size > 5000


def test_provenance_names_dirty_runs_and_machines(built):
    prov = built["res"]["provenance"]
    assert prov["runs_not_from_a_clean_tree"] == ["sse/lambda0.1/seed2", "sse/lambda0.5/seed2",
                                                  "sse/lambda1.0/seed2"]
    assert prov["machines_of_runs"] == ["Fake CPU 9000 (2 threads, AVX2)"]
    assert prov["bootstrap"] == {"n_boot": 1000, "seed": 0} and prov["runs"] == 49
    assert prov["python"] == "3.11.7" and prov["sum_of_run_wall_times_s"] == 490.0
    assert json.loads(read(built, "provenance.json")) == prov
    assert "**3 of 49 run(s) were not produced from a clean tree**" in read(built, "README.md")


def test_the_report_follows_a_changed_run(study, tmp_path, fab):
    # a different records file (and metrics) of one grid run changes its row, nothing is cached
    before = build_report(study, fab.PARAMS, "synth", tmp_path / "a", study / "selection.json")["summary"]
    fab.write_run(study / "sse" / "lambda1.0" / "seed0", "sse", {"lambda_noobj": 1.0}, 0, "grid", 0.39, 40)
    after = build_report(study, fab.PARAMS, "synth", tmp_path / "a", study / "selection.json")["summary"]
    key = before["condition"] == "sse/lambda1.0"
    # seeds 0-2 had 88, 90, 92 true positives; now 40, 90, 92
    assert before.loc[key, "test_mean"].item() == pytest.approx(270 / 600)
    assert after.loc[key, "test_mean"].item() == pytest.approx(222 / 600)


def test_cli_select_then_report(study, tmp_path, capsys, fab):
    import yaml

    from lossbench.cli import main

    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(fab.PARAMS))
    sel = tmp_path / "selection.json"
    assert main(["select", "--runs", str(study), "--params", str(params), "--out", str(sel)]) == 0
    assert json.loads(sel.read_text()) == json.loads((study / "selection.json").read_text())
    out = tmp_path / "report"
    assert main(["report", "--profile", "synth", "--params", str(params), "--runs", str(study),
                 "--selection", str(sel), "--out", str(out)]) == 0
    assert "49 runs, 16 comparisons" in capsys.readouterr().out
    (study / "sse" / "lambda0.1" / "seed1" / "metrics.json").unlink()
    assert main(["select", "--runs", str(study), "--params", str(params), "--out", str(sel)]) == 2
    assert "missing run: " in capsys.readouterr().err


def test_the_synth_report_shows_the_sweep_figure_and_links_its_tables(study, tmp_path, fab):
    """The sweep runs after the report, so the report links to it and shows its figure (paths
    that resolve to the sweep report's files); a profile the sweep is not drawn from, or params
    without a sweep, get no such section."""
    from lossbench.report.sweep import build_sweep_report

    reports = tmp_path / "reports"
    build_report(study, fab.SWEEP_PARAMS, "synth", reports / "synth", study / "selection.json")
    runs, data = fab.make_sweep(tmp_path)
    build_sweep_report(runs, data, fab.SWEEP_PARAMS, study / "selection.json", reports / "sweep")
    text = (reports / "synth" / "README.md").read_text()
    section = text.split("## Imbalance sweep", 1)[1].split("\n## ", 1)[0]
    links = re.findall(r"\]\((\.\./sweep/[^)]+)\)", section)
    assert {Path(x).name for x in links} == {"README.md", "sweep.md", "sweep_mAP50_vs_positive_share.png"}
    for link in links:
        assert (reports / "synth" / link).resolve().is_file(), link
    assert "(`params.yaml: sweep.profiles`: sweep_o12, sweep_o4, sweep_o1)" in section
    build_report(study, fab.SWEEP_PARAMS, "voc", tmp_path / "voc", study / "selection.json")
    build_report(study, fab.PARAMS, "synth", tmp_path / "plain", study / "selection.json")
    for out in ("voc", "plain"):
        assert "## Imbalance sweep" not in (tmp_path / out / "README.md").read_text()
