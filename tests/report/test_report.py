"""The profile report, built from fabricated runs (conftest.py) and checked against hand-worked values."""

import copy
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


@pytest.fixture(scope="module")
def draws(fab):
    """The test images of each bootstrap resample, as lossbench.records.bootstrap_map documents them."""
    return np.random.default_rng(0).integers(0, fab.N_IMAGES, size=(1000, fab.N_IMAGES))


def cells(fab, tp: int, seeds) -> list[tuple[int, int]]:
    """(true positives, seed) of a fabricated cell whose seed-1 run detects ``tp`` images."""
    return [(fab.tp_of(tp, s), s) for s in seeds]


def boot_mean(fab, draws, cell) -> np.ndarray:
    """A cell's mean on each bootstrap resample (points), independently of the report: on resample b a run's mAP50 is
    the share of the drawn images among its true-positive images."""
    return np.mean([100 * np.isin(draws, fab.tp_images(tp, s)).mean(axis=1) for tp, s in cell], axis=0)


def boot_var(fab, draws, cell) -> float:
    """Bootstrap variance (points²) of a cell's mean."""
    return float(boot_mean(fab, draws, cell).var(ddof=1))


def boot_diff_var(fab, draws, a, b) -> float:
    """Bootstrap variance (points²) of the difference of two cells' means on the same resamples (paired)."""
    return float((boot_mean(fab, draws, a) - boot_mean(fab, draws, b)).var(ddof=1))


def holm_by_hand(p: list[float], alpha: float = 0.05) -> tuple[list[float], list[float]]:
    """Holm's adjusted p-values and the level each hypothesis is tested at (the first accepting step's for the rest)."""
    order, m = sorted(range(len(p)), key=lambda i: p[i]), len(p)
    adjusted, levels, running, stopped = [0.0] * m, [0.0] * m, 0.0, None
    for j, i in enumerate(order):
        running = max(running, min(1.0, (m - j) * p[i]))
        adjusted[i] = running
        if stopped is None and p[i] > alpha / (m - j):
            stopped = j
        levels[i] = 1 - alpha / (m - (j if stopped is None else stopped))
    return adjusted, levels


# --- the primary comparisons -----------------------------------------------------------------------------------------

def test_primary_comparisons_by_hand(built, fab, draws):
    """Every row of the Holm family from the fabricated values: cell means (the val-bests over seeds 3-5 only), pooled
    seed variances, paired bootstrap variances of the differences, Welch df across families, Holm's levels, bounded
    intervals and verdicts."""
    comp = built["res"]["comparisons"]
    # focal: γ 0 (3 runs, SS 2), γ 1 extra (3, SS 2) and its selection runs (3, SS 2), γ 2 (6, SS 4), γ 5 seeds 0, 2
    # (seed 1 collapsed; SS 2): SS 12 on 17 - 5 = 12 df. ohem: 2 + 2 + 2 + 4 = 10 on 15 - 4 = 11 df. sse: 8 on 12 - 4.
    fam_var = {"focal": (1.0, 12), "ohem": (10 / 11, 11), "sse": (1.0, 8)}
    g2, r3 = cells(fab, 950, range(6)), cells(fab, 600, range(6))
    g1, rall, l5 = cells(fab, 700, (3, 4, 5)), cells(fab, 720, (3, 4, 5)), cells(fab, 500, (3, 4, 5))
    rows = [  # (A name, B name, A cells, B cells)
        ("focal γ 0, α 0.75", "focal γ 2, α 0.25 (default)", cells(fab, 500, (0, 1, 2)), g2),
        ("focal γ 1, α 0.25 (val-best)", "focal γ 2, α 0.25 (default)", g1, g2),
        ("focal γ 5, α 0.25", "focal γ 2, α 0.25 (default)", cells(fab, 30, (0, 2)), g2),
        ("ohem 1:1", "ohem 3:1 (default)", cells(fab, 400, (0, 1, 2)), r3),
        ("ohem all (val-best)", "ohem 3:1 (default)", rall, r3),
        ("sse λ 0.1", "sse λ 0.5 (val-best, default)", cells(fab, 300, (0, 1, 2)), l5),
        ("sse λ 1", "sse λ 0.5 (val-best, default)", cells(fab, 495, (0, 1, 2)), l5),
        ("focal γ 1, α 0.25 (val-best)", "ohem all (val-best)", g1, rall),
        ("focal γ 1, α 0.25 (val-best)", "sse λ 0.5 (val-best, default)", g1, l5),
        ("ohem all (val-best)", "sse λ 0.5 (val-best, default)", rall, l5)]
    assert list(zip(comp["name_a"], comp["name_b"])) == [r[:2] for r in rows]
    expect = []
    for (_, _, a, b), r in zip(rows, comp.itertuples()):
        (s2a, dfa), (s2b, dfb) = fam_var[r.family_a], fam_var[r.family_b]
        ma, mb = np.mean([tp / 10 for tp, _ in a]), np.mean([tp / 10 for tp, _ in b])
        if r.kind == "within":  # one pooled variance
            seed_var, df = s2a * (1 / len(a) + 1 / len(b)), dfa
        else:  # Welch: two pooled variances, Satterthwaite df from their residual df
            va, vb = s2a / len(a), s2b / len(b)
            seed_var, df = va + vb, (va + vb) ** 2 / (va**2 / dfa + vb**2 / dfb)
        se = math.sqrt(seed_var + boot_diff_var(fab, draws, a, b))
        expect.append((ma - mb, se, df, 2 * st.t.sf(abs(ma - mb) / se, df)))
        assert (r.seeds_a, r.seeds_b) == (tuple(s for _, s in a), tuple(s for _, s in b))
        assert (r.n_a, r.n_b, r.mean_a, r.mean_b) == (len(a), len(b), pytest.approx(ma), pytest.approx(mb))
    comp_vals = comp[["diff", "se", "df", "p"]].to_numpy()
    assert comp_vals == pytest.approx(np.array(expect), rel=1e-9)
    adjusted, levels = holm_by_hand([e[3] for e in expect])
    assert list(comp["p_holm"]) == pytest.approx(adjusted, rel=1e-9)
    assert list(comp["level"]) == pytest.approx(levels, rel=1e-12)
    for (d, se, df, _), level, r in zip(expect, levels, comp.itertuples()):
        half = st.t.ppf((1 + level) / 2, df) * se
        assert (r.diff_lo, r.diff_hi) == pytest.approx((max(d - half, -100), min(d + half, 100)), rel=1e-9)
    # the val-best's selection seeds stay out: γ 1's six runs would give 72.5, its seeds 3-5 give 70
    assert comp.loc[1, "mean_a"] == pytest.approx(70.0) and comp.loc[4, "mean_a"] == pytest.approx(72.0)
    assert list(comp["verdict"]) == ["A < B", "A < B", "A < B", "A < B", "A > B", "A < B", "not resolved",
                                     "not resolved", "A > B", "A > B"]
    # the tables say the same: Markdown verdicts verbatim, CSV numbers with the difference's interval
    table = md_rows(read(built, "tables/comparisons.md"))
    assert table[0][:2] == ["A", "B"] and [row[8] for row in table[1:]] == list(comp["verdict"])
    assert table[2][3] == "3,4,5 / 0,1,2,3,4,5" and table[2][4] == "-25.0"
    csv = pd.read_csv(built["out"] / "tables" / "comparisons.csv")
    assert csv["seeds_a"].tolist()[:3] == ["0,1,2", "3,4,5", "0,2"]
    assert csv[["diff_lo", "diff_hi"]].to_numpy() == pytest.approx(comp[["diff_lo", "diff_hi"]].to_numpy(), abs=1e-6)


def test_collapse_counts(built):
    """focal γ 5's seed 1 ends at val 0.0: counted, left out of the means, Fisher's test (1 of 3 against 0 of 6: the
    one table as extreme has probability 3/9), alone in the collapse family; sse's prior-off runs all collapse."""
    comp = built["res"]["comparisons"].set_index("name_a")
    g5 = comp.loc["focal γ 5, α 0.25"]
    assert (g5["collapsed_a"], g5["n_a_all"], g5["collapsed_b"], g5["n_b_all"], g5["n_a"]) == (1, 3, 0, 6, 2)
    assert (g5["p_collapse"], g5["p_collapse_holm"]) == pytest.approx((1 / 3, 1 / 3))
    others = built["res"]["comparisons"].drop(index=2)
    assert (others["collapsed_a"] + others["collapsed_b"] == 0).all() and (others["p_collapse_holm"] == 1).all()
    assert md_rows(read(built, "tables/comparisons.md"))[3][10:] == ["1 of 3 / 0 of 6", "0.333 (0.333)"]
    focal = md_rows(read(built, "tables/focal.md"))
    assert [r[2] for r in focal[1:]] == ["0 of 3", "0 of 3", "0 of 6", "1 of 3"]
    # all runs (2, 0, 4): mean 2, t half 4.303 * 2 / sqrt 3 = 4.97 -> [-2.97, 6.97], bounded at 0; not collapsed 3.0
    assert focal[4][:5] == ["γ 5, α 0.25", "0,1,2", "1 of 3", "30.0 [0.0, 94.6]", "2.0 [0.0, 7.0]"]
    assert focal[4][5].startswith("3.0 [")
    prior = md_rows(read(built, "tables/prior_off.md"))
    assert prior[3][:5] == ["sse", "λ 0.5", "0,1,2", "0 of 3 / 3 of 3", "0.100"]
    assert prior[3][-1] == "not resolved (B: every run collapsed, see the collapse test)"


def test_per_setting_summary(built, fab, draws):
    """The val-best's row: its grid seeds on val, its other seeds on test; the pooled interval by hand."""
    rows = {r[0]: r for r in md_rows(read(built, "tables/focal.md"))[1:]}
    g1 = rows["γ 1, α 0.25 ★"]
    # val 0.61, 0.62, 0.63: t(0.975, 2) 4.302653 * 1 / sqrt 3 = 2.48; test 69, 70, 71 -> the same half width
    assert g1[1:5] == ["3,4,5", "0 of 3", "62.0 [59.5, 64.5]", "70.0 [67.5, 72.5]"]
    half = st.t.ppf(0.975, 12) * math.sqrt(1.0 / 3 + boot_var(fab, draws, cells(fab, 700, (3, 4, 5))))
    assert g1[5] == f"70.0 [{70 - half:.1f}, {70 + half:.1f}]"
    # cls/box 0.3 / 0.2; 1% of steps clipped; γ 1 is the lowest γ of the α .25 line
    assert g1[6:] == ["1.50", "1.0", "γ 1, α 0.25 is the lowest γ of the grid"]
    assert rows["γ 2, α 0.25 †"][1] == "0,1,2,3,4,5"
    assert md_rows(read(built, "tables/sse.md"))[2][:2] == ["λ 0.5 ★†", "3,4,5"]  # the val-best is the default
    summ = built["res"]["summary"].set_index("setting")
    assert summ.loc["γ 1, α 0.25", "test_ok_lo"] == pytest.approx(70 - half, rel=1e-9)
    shares = md_rows(read(built, "tables/loss_shares.md"))
    assert shares[0][3:] == ["positives (%)", "hard negatives (%)", "easy negatives (%)", "cls/box loss"]
    assert shares[-1] == ["sse", "λ 0.5 (prior off)", "3", "100.0", "0.0", "0.0", "1.50"]


def test_every_interval_lies_in_the_metric_range(built):
    """Every interval of every CSV: means within [0, 100], differences within [-100, 100]; the bound is met where the
    raw interval would leave the range."""
    checked = 0
    for path in sorted((built["out"] / "tables").glob("*.csv")):
        t = pd.read_csv(path)
        for col in [c for c in t.columns if c.endswith(("_lo", "_hi"))]:
            lo, hi = (-100, 100) if col.startswith("diff") else (0, 100)
            values = t[col].dropna()
            assert ((values >= lo) & (values <= hi)).all(), (path.name, col, values.tolist())
            checked += len(values)
    assert checked == 10 * 6 + 10 * 2 + 3 * 6 - 2  # settings, comparisons, prior off (sse: no difference)
    focal = pd.read_csv(built["out"] / "tables" / "focal.csv").set_index("setting")
    assert focal.loc["γ 5, α 0.25", ["val_lo", "test_all_lo"]].tolist() == [0.0, 0.0]


def test_figure_error_bars_are_clipped_to_the_range(built, tmp_path, monkeypatch):
    """An interval reaching past [0, 100] is drawn clipped to it."""
    import matplotlib.axes

    from lossbench.report import figures

    drawn = []
    original = matplotlib.axes.Axes.errorbar

    def spy(self, x, y, yerr=None, **kw):
        drawn.append((np.asarray(y, dtype=float), np.asarray(yerr, dtype=float)))
        return original(self, x, y, yerr=yerr, **kw)

    monkeypatch.setattr(matplotlib.axes.Axes, "errorbar", spy)
    summ = built["res"]["summary"].copy()
    summ.loc[0, ["val_lo", "test_all_hi"]] = [-30.0, 140.0]
    figures.ablation(summ, tmp_path, [0, 1, 2])
    figures.cross_family(built["res"]["runs"], summ.assign(test_all_lo=-5.0), tmp_path)
    assert len(drawn) == 6 + 5
    for y, (below, above) in ((y, e.reshape(2, -1)) for y, e in drawn):
        assert (y - below >= 0).all() and (y + above <= 100 + 1e-9).all()


def test_figure_axes_span_the_values(built, tmp_path, monkeypatch):
    """Differences of a point stay visible: the y axis spans the drawn values (not 0 to 100), within [-1, 101]."""
    import matplotlib.pyplot as plt

    from lossbench.report import figures

    limits = []
    monkeypatch.setattr(figures, "_save", lambda fig, out, name: limits.append(
        (name, [ax.get_ylim() for ax in fig.axes])) or plt.close(fig))
    summ = built["res"]["summary"]
    figures.ablation(summ, tmp_path, [0, 1, 2])
    figures.cross_family(built["res"]["runs"], summ, tmp_path)
    shown = summ[summ.best | summ.default]
    for (name, lims), values, splits in zip(limits, (summ, shown), (["val", "test_all"], ["test_all"])):
        for lo, hi in lims:
            assert -1 <= lo <= values[[f"{x}_lo" for x in splits]].min().min(), (name, lo)
            assert values[[f"{x}_hi" for x in splits]].max().max() <= hi <= 101, (name, hi)
    (lo, hi), = limits[1][1]
    assert 0 < lo and hi < 100, (lo, hi)  # the val-bests' and defaults' test intervals lie within [47, 95]


# --- calibration -----------------------------------------------------------------------------------------------------

def test_calibration_table_by_hand(built):
    """T: the study's runs on the calibration seeds 0, 1 (the val-best's from the grid); 2T: the calibration runs."""
    cal = pd.read_csv(built["out"] / "tables" / "calibration.csv")
    got = [(r.family, r.role, r.setting, r.seeds, round(r.val_T, 9), round(r.val_2T, 9), round(r.gain, 9),
            r.gain_below, r.order_changes) for r in cal.itertuples()]
    assert got == [
        ("focal", "paper default", "γ 2, α 0.25", "0,1", 54.5, 58.5, 4.0, False, False),  # 0.54, 0.55 -> .58, .59
        ("focal", "val-best", "γ 1, α 0.25", "0,1", 61.5, 62.3, 0.8, True, False),  # .61, .62 -> .62, .626
        ("ohem", "paper default", "3:1", "0,1", 49.5, 50.3, 0.8, True, True),  # .49, .50 -> .50, .506
        ("ohem", "val-best", "all", "0,1", 51.5, 49.8, -1.7, True, True),  # .51, .52 -> .495, .501
        ("sse", "val-best = paper default", "λ 0.5", "0,1", 44.5, 45.0, 0.5, True, False)]  # one row
    assert cal.loc[3, ["order_T", "order_2T"]].tolist() == ["val-best > default", "val-best < default"]
    rows = md_rows(read(built, "tables/calibration.md"))
    assert rows[1][4:8] == ["54.5", "58.5", "+4.0", "no"] and rows[5][-2:] == ["—", "—"]
    readme = read(built, "README.md")
    assert ("**not converged**: shortfall 3.0 points (the largest gain of 2T over T, +4.0 for focal γ 2, α 0.25, "
            "against the criterion of less than 1.0); the order of paper default and val-best changes in ohem.") in readme


def test_calibration_converged(study, tmp_path, fab):
    """2T runs within a point of T and no order change: converged."""
    for (fam, role, seed), val in {("focal", "default", 0): 0.545, ("focal", "default", 1): 0.553,
                                   ("ohem", "best", 0): 0.515, ("ohem", "best", 1): 0.525}.items():
        d = study / "calibration" / role / fam / f"seed{seed}"
        rec = json.loads((d / "metrics.json").read_text())
        fab.write_run(d, fam, rec["setting"], seed, rec["role"], val, fab.tp_of(100, seed), iters=2 * fab.ITERS)
    res = build_report(study, fab.PARAMS, "synth", tmp_path / "r", study / "selection.json")
    assert not res["calibration"]["order_changes"].any()
    assert ("**converged**: every gain of 2T over T is below 1.0 point (largest +0.8, focal γ 1, α 0.25); no "
            "within-family order changes.") in (tmp_path / "r" / "README.md").read_text()


def test_schedule_is_checked(study, tmp_path, fab):
    params = copy.deepcopy(fab.PARAMS)
    params["calibration"]["iters"] = 1000
    with pytest.raises(ReportError, match=r"calibration.iters is 1000, but the study's runs trained T = 600"):
        build_report(study, params, "synth", tmp_path / "r", study / "selection.json")
    for run, iters, why in (("calibration/best/ohem/seed1", 600, "calibration.iters is 1200"),
                            ("ohem/ratio1/seed0", 500, "the study's T is 600")):
        f = study / run / "metrics.json"
        rec = json.loads(f.read_text())
        f.write_text(json.dumps({**rec, "iters": iters}))
        with pytest.raises(ReportError, match=f"{run}/metrics.json: iters is {iters}, but {why}"):
            build_report(study, fab.PARAMS, "synth", tmp_path / "r", study / "selection.json")
        f.write_text(json.dumps(rec))


# --- paper orderings, backbone, detectability ------------------------------------------------------------------------

def test_paper_orderings(built):
    """focal: every comparison has γ 2 above (confirmed); ohem: 'all' resolved above 3:1 (contradicted); sse: λ 1 vs
    λ .5 not resolved (not resolved). Each line states the regime, and the calibration's caveat where a setting's 2T
    gain misses the criterion (focal's default, +4.0) or the order changes at 2T (ohem); sse's +0.5 meets it."""
    lines = [x for x in read(built, "README.md").splitlines() if x.startswith(("- RetinaNet (", "- SSD (", "- YOLO"))]
    regime = "Regime: synth profile, T = 600 iterations, the backbone pretrained here, 2,798,880 parameters."
    at_t = "The verdict is a statement about the study's schedule T, not about longer training."
    assert lines == [
        "- RetinaNet (Lin et al. 2017, Table 1b): γ 2 ranks first among the γ rows at α .25 (focal γ 2, α 0.25): "
        "**confirmed**; of 3 primary comparison(s) against the default, 3 resolved with the default above. " + regime
        + " Not converged at T in this family: γ 2, α 0.25 (paper default) gains +4.0 val points from T to 2T (54.5 → "
        "58.5); γ 1, α 0.25 (val-best) gains +0.8 val points from T to 2T (61.5 → 62.3). " + at_t,
        "- SSD (Liu et al. 2016): hard negatives at most 3:1 (ohem 3:1): **contradicted**; of 2 primary comparison(s) "
        "against the default, 1 resolved with the default above, 1 with another setting above it (ohem all). " + regime
        + " Not converged at T in this family: 3:1 (paper default) gains +0.8 val points from T to 2T (49.5 → 50.3); "
        "all (val-best) gains -1.7 val points from T to 2T (51.5 → 49.8); the order of val-best and paper default "
        "changes at 2T (val-best > default → val-best < default). " + at_t,
        "- YOLO v1 (Redmon et al. 2016): λ_noobj .5 (sse λ 0.5): **not resolved**; of 2 primary comparison(s) against "
        "the default, 1 resolved with the default above, 1 not resolved. " + regime]
    assert built["res"]["orderings"]["status"].tolist() == ["confirmed", "contradicted", "not resolved"]


def test_orderings_need_a_comparison_and_the_papers_value(fab):
    from lossbench.report.tables import orderings

    comp = pd.DataFrame({"kind": ["within", "across"], "family": ["focal", "focal vs ohem"], "a": ["γ 0, α 0.25", "x"],
                         "verdict": ["A < B", "A > B"]})
    sel = {"families": {"focal": {"default": {"gamma": 2.0, "alpha": 0.25}}, "ohem": {"default": {"neg_pos_ratio": 3}},
                        "sse": {"default": {"lambda_noobj": 0.25}}}}
    out = orderings(comp, sel).set_index("family")
    assert out["status"].to_dict() == {"focal": "confirmed", "ohem": "not resolved", "sse": "not tested"}


def test_pretrained_backbone_and_detectability(built):
    readme = read(built, "README.md")
    section = readme.split("## Pretrained backbone", 1)[1].split("\n## ", 1)[0]
    for phrase in ("20,000 generated images of generator seed 1", "3,000 steps of 32", "mAP 97.64 %",
                   "subset accuracy 73.4 %", "Cost: 473.5 s", "5.6 MB (float16, sha256 `66e4b5caf1a6c4c3`)",
                   "2,798,880 backbone parameters"):
        assert phrase in section, phrase
    comp = built["res"]["comparisons"]
    det = comp[comp.kind == "within"].set_index("a")["detectable"]
    assert (det > 3.0).all()  # image noise of 1,000 test images: no within comparison detects 3 points
    assert (f"- sse: 0 of 2 comparisons detect 3 points; λ 0.1 vs λ 0.5 detects {det['λ 0.1']:.1f} points; λ 1 vs "
            f"λ 0.5 detects {det['λ 1']:.1f} points.") in readme


def test_detect_goal_met_and_a_profile_without_pretraining(study, tmp_path, fab):
    params = copy.deepcopy(fab.PARAMS)
    params["comparisons"]["detect_goal"] = 50.0
    init = {"type": "Pretrained", "checkpoint": "torchvision://resnet50"}
    (study / "pretrain" / "metrics.json").write_text(json.dumps({"pretrain": None, "backbone_init_cfg": init}))
    build_report(study, params, "voc", tmp_path / "r", study / "selection.json")
    readme = (tmp_path / "r" / "README.md").read_text()
    assert "- focal: every one of its 3 comparisons detects 50 points (detectable: " in readme
    assert f"Pretrained backbone: none (the config's init_cfg: `{json.dumps(init)}`)." in readme
    assert f"Regime: voc profile, T = 600 iterations, the backbone the config's init_cfg loads, {json.dumps(init)}." \
        in readme


def test_a_study_where_every_run_collapsed(tmp_path, fab):
    """The smoke profile's shape (one grid seed, 4 iterations, no pretraining) with every run at 0: the report is
    written, nothing is resolved, and it says why."""
    runs = fab.make_collapsed_study(tmp_path / "runs")
    res = build_report(runs, fab.SMOKE_PARAMS, "smoke", tmp_path / "r", runs / "selection.json")
    assert res["comparisons"]["verdict"].str.startswith("not resolved (").all()
    assert res["comparisons"]["p"].isna().all() and (res["summary"]["n_collapsed"] == res["summary"]["n"]).all()
    readme = (tmp_path / "r" / "README.md").read_text()
    assert "missing" not in readme and "Pretrained backbone: none (the config's init_cfg: `null`)." in readme
    assert "(sse λ 0.25): **not tested**" in readme  # the smoke grid's default is not YOLO's λ .5
    assert "(ohem 3:1): **not resolved**; no primary comparison against the default" in readme
    assert "**converged**" in readme


# --- inputs: every run of the design, checked ------------------------------------------------------------------------

def test_duplicate_extra_runs_are_merged_once(built):
    # sse's val-best is its paper default: extra/default and extra/best train the same seeds 3-5, and
    # calibration/default and calibration/best the same seeds 0, 1
    df = built["res"]["runs"]
    sse = df[df.condition == "sse/lambda0.5"]
    assert sse["seed"].tolist() == [0, 1, 2, 3, 4, 5]
    assert sse["run"].tolist()[3:] == [f"extra/default/sse/seed{s}" for s in (3, 4, 5)]
    assert df[df.condition == "sse/lambda0.5/2T"]["run"].tolist() == [f"calibration/default/sse/seed{s}" for s in (0, 1)]
    # 10 settings x 3 seeds + 3 families x 2 roles x 3 seeds - 3 duplicates + 3 x 3 prior off + 3 x 2 x 2 - 2 at 2T
    assert len(df) == 30 + 18 - 3 + 9 + 12 - 2


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


@pytest.mark.parametrize("gone", ["ohem/ratio3/seed1", "prior_off/focal/seed2", "extra/best/ohem/seed4",
                                  "calibration/best/focal/seed1", "calibration/default/sse/seed0"])
def test_a_missing_run_raises_naming_its_folder(study, tmp_path, gone, fab):
    (study / gone / "metrics.json").unlink()
    with pytest.raises(ReportError, match=f"missing run: .*{gone} has no metrics.json"):
        build_report(study, fab.PARAMS, "synth", tmp_path / "report", study / "selection.json")
    assert not (tmp_path / "report").exists()


def test_a_missing_pretrain_record_raises(study, tmp_path, fab):
    (study / "pretrain" / "metrics.json").unlink()
    with pytest.raises(ReportError, match=r"missing .*runs/pretrain/metrics.json"):
        build_report(study, fab.PARAMS, "synth", tmp_path / "report", study / "selection.json")


def test_a_run_that_contradicts_its_folder_raises(study, tmp_path, fab):
    f = study / "extra" / "best" / "focal" / "seed3" / "metrics.json"
    rec = json.loads(f.read_text())
    f.write_text(json.dumps({**rec, "setting": {"gamma": 2.0, "alpha": 0.25}}))  # the paper default, not the val-best
    with pytest.raises(ReportError, match="extra/best/focal/seed3/metrics.json: setting is"):
        build_report(study, fab.PARAMS, "synth", tmp_path / "report", study / "selection.json")
    f.write_text(json.dumps(rec))
    f = study / "calibration" / "best" / "ohem" / "seed0" / "metrics.json"
    f.write_text(json.dumps({**json.loads(f.read_text()), "role": "best"}))
    with pytest.raises(ReportError, match="calibration/best/ohem/seed0/metrics.json: role is 'best', the folder says "
                                          "'calibration_best'"):
        build_report(study, fab.PARAMS, "synth", tmp_path / "report", study / "selection.json")


def test_stale_records_raise(study, tmp_path, fab):
    fab.write_records(study / "ohem" / "ratio1" / "seed0" / "test_records.npz", np.arange(5))
    with pytest.raises(ReportError, match=r"ratio1/seed0/test_records.npz: mAP50 from the records is 0.005"):
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


def test_params_must_fix_the_comparisons(study, tmp_path, fab):
    params = {k: v for k, v in fab.PARAMS.items() if k != "comparisons"}
    with pytest.raises(ReportError, match="params: comparisons must give alpha, power, collapse_below"):
        build_report(study, params, "synth", tmp_path / "report", study / "selection.json")
    params = copy.deepcopy(fab.PARAMS)
    params["comparisons"]["primary"] = [{"within": "ghm"}]
    with pytest.raises(ReportError, match="comparisons.primary: spec: family 'ghm' has no runs"):
        build_report(study, params, "synth", tmp_path / "report", study / "selection.json")


# --- the whole report ------------------------------------------------------------------------------------------------

def test_readme_sections_and_design(built):
    readme = read(built, "README.md")
    sections = re.findall(r"^## (.+)$", readme, flags=re.M)
    assert sections == ["How the numbers are made", "Pretrained backbone", "Calibration: T against 2T",
                        "Primary comparisons", "Paper orderings", "Best setting of each family", "Per-setting summary",
                        "Exploratory (outside the Holm family)", "The losses", "Controlled variables and deviations",
                        "Published anchors", "Provenance"]
    for phrase in ("highest mean val mAP50 over seeds 0,1,2", "the test split never chooses", "also seeds 3,4,5",
                   "2T = 1,200 iterations, seeds 0,1", "One Holm family of 10 tests at family-wise 95%",
                   "1000 bootstrap resamples", "below 5% has collapsed",
                   "**SSD hard negative mining**: val-best all", "**On the grid's edge**: all is the highest",
                   "no λ_coord, no √w/√h", "P(background) = 1 − π", "`obj_target: iou`", "values in these runs: 20",
                   "Runs with no detection above the score threshold on test: focal/gamma5.0_alpha0.25/seed1"):
        assert phrase in readme, phrase
    assert "missing" not in readme
    for name in ("calibration_val_mAP50", "cross_family_mAP50", "ablation_mAP50", "focal_loss_fig1"):
        assert f"(figures/{name}.png)" in readme
    tex = read(built, "tables/focal.tex")
    assert r"\toprule" in tex and r"\caption{" in tex and r"$\gamma$ 1, $\alpha$ 0.25 $\star$" in tex
    assert r"$\gamma$ 2, $\alpha$ 0.25 \dag{}" in tex


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
    # 7 tables x 3 formats, 4 figures x 2, runs.csv, README, provenance
    assert len(files) == 21 + 8 + 3
    assert [str(f) for f in files if (a / f).read_bytes() != (tmp_path / "b" / f).read_bytes()] == []
    for name in ("ablation_mAP50", "cross_family_mAP50", "calibration_val_mAP50", "focal_loss_fig1"):
        assert (a / "figures" / f"{name}.png").stat().st_size > 5000


def test_provenance_names_dirty_runs_and_machines(built):
    prov = built["res"]["provenance"]
    assert prov["runs_not_from_a_clean_tree"] == ["sse/lambda0.1/seed2", "sse/lambda0.5/seed2",
                                                  "sse/lambda1.0/seed2"]
    assert prov["machines_of_runs"] == ["Fake CPU 9000 (2 threads, AVX2)"]
    assert prov["bootstrap"] == {"n_boot": 1000, "seed": 0} and prov["runs"] == 64
    assert prov["python"] == "3.11.7" and prov["sum_of_run_wall_times_s"] == 640.0
    assert json.loads(read(built, "provenance.json")) == prov
    assert "**3 of 64 run(s) were not produced from a clean tree**" in read(built, "README.md")


def test_the_report_follows_a_changed_run(study, tmp_path, fab):
    # a different records file (and metrics) of one grid run changes its row, nothing is cached
    before = build_report(study, fab.PARAMS, "synth", tmp_path / "a", study / "selection.json")
    fab.write_run(study / "sse" / "lambda1.0" / "seed0", "sse", {"lambda_noobj": 1.0}, 0, "grid", 0.39, 40)
    after = build_report(study, fab.PARAMS, "synth", tmp_path / "a", study / "selection.json")
    # seeds 0-2 had 485, 495, 505 true positives of 1000; now 40, 495, 505
    for res, want in ((before, 1485 / 30), (after, 1040 / 30)):
        s = res["summary"].set_index("setting")
        assert s.loc["λ 1", "test_all_mean"] == pytest.approx(want)
    assert before["provenance"]["inputs_sha256"] != after["provenance"]["inputs_sha256"]


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
    assert "64 runs, 10 comparisons" in capsys.readouterr().out
    (study / "calibration" / "best" / "ohem" / "seed1" / "metrics.json").unlink()
    assert main(["report", "--profile", "synth", "--params", str(params), "--runs", str(study),
                 "--selection", str(sel), "--out", str(out)]) == 2
    assert "missing run: " in capsys.readouterr().err
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
