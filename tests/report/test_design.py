"""The pooled-seed design: hand-worked pooled intervals, Welch across families, selection seeds left out of the
chosen cell, collapse as its own endpoint, bounded intervals, Holm levels and verdicts."""

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as st

from lossbench.report.design import family_model, primary_comparisons, setting_summary
from lossbench.report.stats import detectable_difference, holm

COLS = ["family", "setting", "seed", "val", "test"]


def runs(*cells):
    """``(family, setting, {seed: test})`` -> runs table; val = test unless given as ``{seed: (val, test)}``."""
    rows = []
    for family, setting, by_seed in cells:
        for seed, v in by_seed.items():
            val, test = v if isinstance(v, tuple) else (v, v)
            rows.append((family, setting, seed, float(val), float(test)))
    return pd.DataFrame(rows, columns=COLS)


# A 60, 62, 64 (mean 62, SS 8), B 50, 53, 56 (mean 53, SS 18): pooled s2 = 26 / (6 - 2) = 6.5 on 4 df
TWO = runs(("f", "A", {0: 60, 1: 62, 2: 64}), ("f", "B", {0: 50, 1: 53, 2: 56}))


def test_within_family_interval_hand_worked():
    # no selection seeds here: every run counts. diff = 62 - 53 = 9, se = sqrt(6.5 (1/3 + 1/3)) = sqrt(13/3)
    # = 2.081666; one comparison: level .95, t_{.975, 4} = 2.776445 -> half 5.779631; t = 9 / se = 4.323460,
    # df 4: P(|T| > t) = 1 - sqrt(x) (1 + (1 - x) / 2) with x = t^2 / (4 + t^2) = .0124135
    out = primary_comparisons(TWO, [{"within": "f"}], set(), {"f": "A"}, {"f": "B"})
    assert len(out) == 1
    r = out.iloc[0]
    assert (r["kind"], r["a"], r["b"], r["n_a"], r["n_b"], r["df"]) == ("within", "A", "B", 3, 3, 4)
    assert (r["mean_a"], r["mean_b"], r["diff"]) == (62.0, 53.0, 9.0)
    assert r["sigma_a"] == pytest.approx(math.sqrt(6.5), rel=1e-12)
    assert r["se"] == pytest.approx(math.sqrt(13 / 3), rel=1e-12) and r["se"] == pytest.approx(2.081666, abs=1e-6)
    assert r["level"] == 0.95
    assert (r["lo"], r["hi"]) == pytest.approx((9 - 5.779631, 9 + 5.779631), abs=1e-6)
    t = 9 / math.sqrt(13 / 3)
    x = t * t / (4 + t * t)
    assert r["p"] == pytest.approx(1 - math.sqrt(x) * (1 + (1 - x) / 2), rel=1e-9)
    assert r["p"] == pytest.approx(0.0124135, abs=1e-7)
    # independent: with two settings the pooled t-test is the one-way ANOVA (t^2 = F, same p)
    f = st.f_oneway([60, 62, 64], [50, 53, 56])
    assert t * t == pytest.approx(f.statistic, rel=1e-12) and r["p"] == pytest.approx(f.pvalue, rel=1e-9)
    assert r["verdict"] == "A > B" and r["seeds_a"] == (0, 1, 2)


def test_family_model_against_least_squares():
    """Independent reference: OLS with one dummy per setting (numpy lstsq), residual SS / (N - k)."""
    rng = np.random.default_rng(3)
    cells = [("f", s, {seed: float(rng.normal(mu, 4)) for seed in range(n)})
             for s, mu, n in (("g0", 40, 3), ("g1", 55, 6), ("g2", 52, 3), ("g3", 30, 2))]
    df = runs(*cells)
    fit = family_model(df)
    x = pd.get_dummies(df["setting"]).to_numpy(dtype=float)
    beta, rss, *_ = np.linalg.lstsq(x, df["test"].to_numpy(), rcond=None)
    assert fit.df == 14 - 4 and fit.sigma2 == pytest.approx(float(rss[0]) / 10, rel=1e-10)
    assert [fit.means[s] for s in ("g0", "g1", "g2", "g3")] == pytest.approx(beta, rel=1e-12)
    assert fit.settings == ("g0", "g1", "g2", "g3") and fit.n == {"g0": 3, "g1": 6, "g2": 3, "g3": 2}


def test_across_families_welch_hand_worked():
    # family g: C 40, 44 (mean 42, SS 8), D 30, 31, 32, 33 (mean 31.5, SS 5): s2 = 13 / (6 - 2) = 3.25 on 4 df
    # val-bests A (f, n 3, s2 6.5) and C (g, n 2): diff 62 - 42 = 20, se^2 = 6.5/3 + 3.25/2 = 13/6 + 13/8 = 91/24,
    # df = (91/24)^2 / ((13/6)^2 / 4 + (13/8)^2 / 4) = 7.84; t_{.975, 7.84} from scipy
    df = pd.concat([TWO, runs(("g", "C", {0: 40, 1: 44}), ("g", "D", {0: 30, 1: 31, 2: 32, 3: 33}))])
    out = primary_comparisons(df, [{"across": "val_best"}], set(), {"f": "A", "g": "C"}, {"f": "B", "g": "D"})
    r = out.iloc[0]
    assert (r["kind"], r["family"], r["a"], r["b"], r["n_a"], r["n_b"]) == ("across", "f vs g", "A", "C", 3, 2)
    assert r["diff"] == 20.0 and r["se"] == pytest.approx(math.sqrt(91 / 24), rel=1e-12)
    assert r["df"] == pytest.approx(7.84, rel=1e-12)
    half = st.t.ppf(0.975, 7.84) * math.sqrt(91 / 24)
    assert (r["lo"], r["hi"]) == pytest.approx((20 - half, 20 + half), rel=1e-10)
    assert (r["sigma_a"], r["sigma_b"]) == pytest.approx((math.sqrt(6.5), math.sqrt(3.25)), rel=1e-12)


def test_across_pairs_follow_the_family_order():
    df = pd.concat([TWO, runs(("g", "C", {0: 40, 1: 44}), ("h", "E", {0: 1, 1: 2}))])
    vb = {"h": "E", "f": "A", "g": "C"}
    out = primary_comparisons(df, [{"across": "val_best"}], set(), vb, {"f": "B", "g": "C", "h": "E"})
    assert list(zip(out["family_a"], out["family_b"])) == [("h", "f"), ("h", "g"), ("f", "g")]
    out = primary_comparisons(df, [{"across": "val_best", "families": ["f", "g", "h"]}], set(), vb,
                              {"f": "B", "g": "C", "h": "E"})
    assert list(zip(out["family_a"], out["family_b"])) == [("f", "g"), ("f", "h"), ("g", "h")]


# the val-best g1 scored high on the seeds that chose it (80-82) and lower on its extra seeds (60-62)
BIASED = runs(
    ("focal", "g0", {0: 50, 1: 51, 2: 52}),
    ("focal", "g1", {0: 80, 1: 81, 2: 82, 3: 60, 4: 61, 5: 62}),
    ("focal", "g2", {0: 55, 1: 56, 2: 57, 3: 55, 4: 56, 5: 57}),
    ("sse", "l1", {0: 40, 1: 41, 2: 42}),
    ("sse", "l5", {0: 70, 1: 71, 2: 72, 3: 44, 4: 45, 5: 46}),
)
SEL = {0, 1, 2}
VAL_BEST = {"focal": "g1", "sse": "l5"}
DEFAULT = {"focal": "g2", "sse": "l5"}


def test_val_best_selection_seeds_are_excluded():
    out = primary_comparisons(BIASED, [{"within": "focal"}, {"within": "sse"}, {"across": "val_best"}],
                              SEL, VAL_BEST, DEFAULT)
    assert list(zip(out["kind"], out["a"], out["b"])) == [
        ("within", "g0", "g2"), ("within", "g1", "g2"), ("within", "l1", "l5"), ("across", "g1", "l5")]
    g1 = out.iloc[1]
    # the mean of the extra seeds (60, 61, 62), not of all six (71)
    assert g1["mean_a"] == 61.0 and g1["seeds_a"] == (3, 4, 5) and g1["n_a"] == 3 and g1["n_a_all"] == 3
    # the default was not chosen in focal: all six seeds
    assert g1["seeds_b"] == (0, 1, 2, 3, 4, 5) and g1["mean_b"] == 56.0 and g1["diff"] == 5.0
    # sse chose its default: the chosen cell uses only its other seeds, whichever it is
    l1 = out.iloc[2]
    assert l1["seeds_b"] == (3, 4, 5) and l1["mean_b"] == 45.0 and l1["seeds_a"] == (0, 1, 2)
    across = out.iloc[3]
    assert (across["seeds_a"], across["seeds_b"]) == ((3, 4, 5), (3, 4, 5))
    assert (across["mean_a"], across["mean_b"], across["diff"]) == (61.0, 45.0, 16.0)
    # pooled variance, focal: g0 SS 2, g1 extra SS 2, g1 selection runs as their own stratum SS 2, g2 SS 4
    # -> 10 / (3 + 3 + 3 + 6 - 4) = 10/11; without the selection runs 8 / 9. (About one mean of all six g1 runs
    # the SS would be 600 + ... : the selection bias would inflate it.)
    assert g1["sigma_a"] == pytest.approx(math.sqrt(10 / 11), rel=1e-12) and g1["df"] == 11
    out2 = primary_comparisons(BIASED, [{"within": "focal"}], SEL, VAL_BEST, DEFAULT,
                               selection_runs_in_variance=False)
    assert out2.iloc[1]["sigma_a"] == pytest.approx(math.sqrt(8 / 9), rel=1e-12) and out2.iloc[1]["df"] == 9
    assert out2.iloc[1]["mean_a"] == 61.0


def test_setting_summary_counts_and_excludes_selection_seeds():
    s = setting_summary(BIASED, selection_seeds=SEL, val_best=VAL_BEST).set_index("setting")
    assert s.loc["g1", "seeds"] == (3, 4, 5) and s.loc["g1", "mean_all"] == 61.0 and bool(s.loc["g1", "chosen"])
    assert s.loc["g2", "seeds"] == (0, 1, 2, 3, 4, 5) and not bool(s.loc["g2", "chosen"])
    assert s.loc["l5", "mean_ok"] == 45.0
    # without the selection, every run
    assert setting_summary(BIASED).set_index("setting").loc["g1", "mean_all"] == 71.0


# ohem: r1 collapsed on every seed (val 0), the default r3 never, the val-best rall on one extra seed (3)
COLLAPSE = runs(
    ("ohem", "r1", {0: (0.0, 0.0), 1: (0.0, 0.4), 2: (0.0, 0.1)}),
    ("ohem", "r3", {0: 50, 1: 52, 2: 54}),
    ("ohem", "rall", {0: 58, 1: 59, 2: 60, 3: (0.0, 0.0), 4: 55, 5: 57}),
)


def test_collapse_is_counted_and_tested():
    out = primary_comparisons(COLLAPSE, [{"within": "ohem"}], SEL, {"ohem": "rall"}, {"ohem": "r3"})
    r1, rall = out.iloc[0], out.iloc[1]
    # 3/3 vs 0/3: Fisher two-sided p = (1 + 1) / 20 = 0.1 (tables with these margins: 1, 9, 9, 1 / 20)
    assert (r1["collapsed_a"], r1["n_a_all"], r1["collapsed_b"], r1["n_b_all"]) == (3, 3, 0, 3)
    assert r1["p_collapse"] == pytest.approx(0.1, abs=1e-12)
    # no mAP for a cell whose runs all collapsed: reported through the collapse test only
    assert r1["n_a"] == 0 and math.isnan(r1["mean_a"]) and math.isnan(r1["p"]) and math.isnan(r1["lo"])
    assert r1["verdict"].startswith("not resolved") and "collapse" in r1["verdict"]
    # the val-best: its extra seeds 3, 4, 5, seed 3 collapsed -> 1/3 vs 0/3, p = 1; the mAP mean over 4, 5 only
    assert (rall["collapsed_a"], rall["n_a_all"], rall["n_a"], rall["seeds_a"]) == (1, 3, 2, (4, 5))
    assert rall["mean_a"] == 56.0 and rall["p_collapse"] == pytest.approx(1.0)
    # pooled variance from non-collapsed runs only: r3 SS 8, rall extra (55, 57) SS 2, rall selection SS 2
    # -> 12 / (3 + 2 + 3 - 3) = 2.4
    assert rall["sigma_a"] == pytest.approx(math.sqrt(2.4), rel=1e-12) and rall["df"] == 5
    # collapse family (Holm over the comparisons with a collapse): p .1 and 1 -> .2, 1
    assert (r1["p_collapse_holm"], rall["p_collapse_holm"]) == pytest.approx((0.2, 1.0))
    # the mAP family has one test (r1 has none): level .95, Bonferroni level for power .05
    assert rall["level"] == 0.95 and rall["alpha_power"] == pytest.approx(0.05) and rall["p_holm"] == rall["p"]


def test_setting_summary_collapse():
    s = setting_summary(COLLAPSE).set_index("setting")
    assert (s.loc["r1", "n"], s.loc["r1", "n_collapsed"], s.loc["r1", "n_ok"]) == (3, 3, 0)
    assert math.isnan(s.loc["r1", "mean_ok"]) and s.loc["r1", "mean_all"] == pytest.approx(0.5 / 3)
    # rall, all seeds: 6 runs, 1 collapsed; the all-run mean includes its 0, the non-collapsed one does not
    assert (s.loc["rall", "n"], s.loc["rall", "n_collapsed"], s.loc["rall", "n_ok"]) == (6, 1, 5)
    assert s.loc["rall", "mean_all"] == pytest.approx((58 + 59 + 60 + 0 + 55 + 57) / 6)
    assert s.loc["rall", "mean_ok"] == pytest.approx((58 + 59 + 60 + 55 + 57) / 5)
    # r1's all-run interval around 0.17 stays at or above 0
    assert s.loc["r1", "lo_all"] == 0.0 and s.loc["r1", "hi_all"] > 0


def test_no_interval_leaves_the_range():
    """Two seeds per setting, test values at both ends of the scale (val 50: no collapse): the raw intervals
    reach far past it."""
    cells = [("f", "A", (0.5, 99.5)), ("f", "B", (99.0, 1.0)), ("f", "C", (2.0, 3.0)), ("g", "D", (98.0, 99.5)),
             ("g", "E", (6.0, 99.0))]
    df = runs(*[(f, s, {0: (50.0, t0), 1: (50.0, t1)}) for f, s, (t0, t1) in cells])
    out = primary_comparisons(df, [{"within": "f"}, {"within": "g"}, {"across": "val_best"}], set(),
                              {"f": "A", "g": "D"}, {"f": "B", "g": "E"})
    assert len(out) == 4
    assert out["lo"].notna().all() and (out["lo"] >= -100).all() and (out["hi"] <= 100).all()
    # A - B: s2 = (2 * 49.5^2 + 2 * 49^2 + 2 * .5^2) / 3, se = sqrt(s2), df 3, level < .95: half > 100
    a_b = out.iloc[0]
    raw = st.t.ppf((1 + a_b["level"]) / 2, 3) * a_b["se"]
    assert raw > 150 and (a_b["lo"], a_b["hi"]) == (-100.0, 100.0)
    s = setting_summary(df)
    for lo, hi in (("lo_all", "hi_all"), ("lo_ok", "hi_ok")):
        assert (s[lo] >= 0).all() and (s[hi] <= 100).all()
    assert (s["lo_all"] == 0).any() and (s["hi_all"] == 100).any() and (s["hi_ok"] == 100).any()


def test_holm_levels_and_verdicts():
    # a default D and three settings: far above, far below, and close
    df = runs(("f", "D", {0: 50, 1: 51, 2: 49}), ("f", "up", {0: 70, 1: 71, 2: 69}),
              ("f", "down", {0: 35, 1: 34, 2: 36}), ("f", "near", {0: 50.5, 1: 51.5, 2: 49.5}))
    out = primary_comparisons(df, [{"within": "f"}], set(), {"f": "D"}, {"f": "D"})
    assert list(out["a"]) == ["up", "down", "near"]
    adj, lev = holm(list(out["p"]))
    assert list(out["p_holm"]) == pytest.approx(adj) and list(out["level"]) == pytest.approx(lev)
    # s2 = 4 * 2 / 8 = 1, se = sqrt(2/3), df 8; up: t = 20 / se = 24.5, down: t = -15 / se = -18.4 -> tested at
    # .05/3, .05/2, both rejected; near: t = .5 / se = .61, p ~ .56 > .05 -> accepted at level .95
    assert list(out["level"]) == pytest.approx([1 - 0.05 / 3, 1 - 0.05 / 2, 0.95])
    assert list(out["verdict"]) == ["A > B", "A < B", "not resolved"]
    up = out.iloc[0]  # at Holm's first step: the interval at level 1 - .05/3, t_{1 - .05/6, 8} = 3.0158
    half_up = st.t.ppf(1 - 0.05 / 6, 8) * math.sqrt(2 / 3)
    assert half_up == pytest.approx(3.0158 * math.sqrt(2 / 3), abs=1e-3)
    assert (up["lo"], up["hi"]) == pytest.approx((20 - half_up, 20 + half_up), rel=1e-10)
    near = out.iloc[2]
    assert near["lo"] < 0 < near["hi"]
    half = st.t.ppf((1 + near["level"]) / 2, 8) * math.sqrt(2 / 3)
    assert (near["lo"], near["hi"]) == pytest.approx((0.5 - half, 0.5 + half), rel=1e-10)
    # power at the Bonferroni level .05 / 3 from the pooled sigma 1, n 3 and 3, df 8
    from lossbench.report.stats import detectable_difference

    assert list(out["alpha_power"]) == pytest.approx([0.05 / 3] * 3)
    assert near["detectable"] == pytest.approx(detectable_difference(1.0, 3, 3, 8, 0.05 / 3), rel=1e-10)
    assert near["detectable"] > abs(near["diff"])


def test_bootstrap_variance_is_added_to_the_standard_error():
    out = primary_comparisons(TWO, [{"within": "f"}], set(), {"f": "A"}, {"f": "B"},
                              boot_var={("f", "A"): 0.5, ("f", "B"): 0.25})
    r = out.iloc[0]
    assert r["se"] == pytest.approx(math.sqrt(13 / 3 + 0.75), rel=1e-12) and r["df"] == 4
    half = st.t.ppf(0.975, 4) * math.sqrt(13 / 3 + 0.75)
    assert (r["lo"], r["hi"]) == pytest.approx((9 - half, 9 + half), rel=1e-10)


def test_a_paired_bootstrap_variance_replaces_the_sum_of_the_cells():
    # the two cells share the test images: the variance of their difference (0.1) stands in for 0.5 + 0.25
    out = primary_comparisons(TWO, [{"within": "f"}], set(), {"f": "A"}, {"f": "B"},
                              boot_var={("f", "A"): 0.5, ("f", "B"): 0.25}, boot_diff_var={("f", "A", "f", "B"): 0.1})
    r = out.iloc[0]
    assert r["se"] == pytest.approx(math.sqrt(13 / 3 + 0.1), rel=1e-12)
    assert r["detectable"] == pytest.approx(detectable_difference(math.sqrt(13 / 3 * 3 / 2), 3, 3, 4, 0.05,
                                                                  extra_var=0.1), rel=1e-10)


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError, match="repeated"):
        primary_comparisons(pd.concat([TWO, TWO]), [{"within": "f"}], set(), {"f": "A"}, {"f": "B"})
    with pytest.raises(ValueError, match="no default"):
        primary_comparisons(TWO, [{"within": "f"}], set(), {"f": "A"}, {})
    with pytest.raises(ValueError, match="spec entries"):
        primary_comparisons(TWO, [{"between": "f"}], set(), {"f": "A"}, {"f": "B"})
    with pytest.raises(ValueError, match="one family"):
        family_model(pd.concat([TWO, runs(("g", "C", {0: 1.0}))]))
