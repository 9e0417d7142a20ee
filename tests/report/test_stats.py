import math

import numpy as np
import pytest

from lossbench.report.stats import t_interval


def test_t_interval_hand_worked():
    # values 1, 2, 3: mean 2, sample std 1, t_{0.975, 2} = 4.302653
    # half width = 4.302653 * 1 / sqrt(3) = 2.484138
    mean, std, lo, hi = t_interval([1.0, 2.0, 3.0])
    assert (mean, std) == (2.0, 1.0)
    assert lo == pytest.approx(2 - 2.484138, abs=1e-6) and hi == pytest.approx(2 + 2.484138, abs=1e-6)


def test_t_interval_two_seeds_is_wide():
    # 0.5, 0.6: mean 0.55, std 0.0707107, t_{0.975, 1} = 12.706205 -> half 0.635310
    mean, std, lo, hi = t_interval([0.5, 0.6])
    assert mean == pytest.approx(0.55) and std == pytest.approx(0.0707107, abs=1e-7)
    assert hi - mean == pytest.approx(0.635310, abs=1e-6)


def test_single_and_missing_values():
    mean, std, lo, hi = t_interval([0.4, float("nan")])
    assert mean == 0.4 and math.isnan(std) and math.isnan(lo)
    assert all(math.isnan(v) for v in t_interval([]))


def test_holm_by_hand():
    from lossbench.report.stats import holm

    # m = 3, alpha = .05: sorted p .01, .02, .04 are tested at .05/3 = .0167, .05/2 = .025, .05
    # -> .01 rejected, .02 rejected, .04 rejected; adjusted = 3(.01) = .03, max(.03, 2(.02)) = .04,
    # max(.04, .04) = .04
    adj, lev = holm([0.04, 0.01, 0.02])
    assert adj == pytest.approx([0.04, 0.03, 0.04])
    assert lev == pytest.approx([1 - 0.05, 1 - 0.05 / 3, 1 - 0.05 / 2])
    # .01 (vs .0167: rejected), .03 (vs .025: accepted -> stop), .04 accepted at the same level
    adj, lev = holm([0.03, 0.04, 0.01])
    assert adj == pytest.approx([0.06, 0.06, 0.03])
    assert lev == pytest.approx([1 - 0.025, 1 - 0.025, 1 - 0.05 / 3])
    # reject exactly where adjusted <= alpha; NaN (a single pair) is not counted in m
    adj, lev = holm([0.02, math.nan])
    assert adj[0] == pytest.approx(0.02) and math.isnan(adj[1]) and lev[0] == pytest.approx(0.95)


def test_holm_intervals_exclude_zero_exactly_when_holm_rejects():
    """Property: the interval at Holm's level excludes 0 iff the adjusted p-value <= alpha."""
    import numpy as np
    from scipy import stats as st

    from lossbench.report.stats import holm, t_interval

    rng = np.random.default_rng(0)
    for _ in range(200):
        diffs = [rng.normal(rng.uniform(-1, 1), 1, size=5) for _ in range(4)]
        adj, lev = holm([st.ttest_1samp(d, 0.0).pvalue for d in diffs])
        for d, a, c in zip(diffs, adj, lev):
            _, _, lo, hi = t_interval(d, confidence=c)
            assert (lo > 0 or hi < 0) == (a <= 0.05 + 1e-12)


# --- the combined interval (seeds + test images) -------------------------------------------------

def test_combined_interval_hand_worked():
    from lossbench.report.stats import combined_interval

    per_seed = [0.5, 0.6, 0.7]
    d = np.array([-0.02, 0.02, -0.02, 0.02])
    boot = np.add.outer(d, per_seed)  # row means .58, .62, .58, .62: var (ddof 1) = 4 * .02^2 / 3
    # se^2 = var(per_seed)/3 + .000533 = .01/3 + .000533 = .0038667, se = .0621825
    # t_{.975, 2} = 4.302653 -> half = .267550; t = .6/se = 9.649013
    # df = 2: P(|T| > t) = 1 - t / sqrt(2 + t^2) = .0105707
    mean, lo, hi, p = combined_interval(per_seed, boot)
    assert mean == pytest.approx(0.6)
    assert lo == pytest.approx(0.6 - 0.267550, abs=1e-6) and hi == pytest.approx(0.6 + 0.267550, abs=1e-6)
    t = 0.6 / math.sqrt(0.01 / 3 + 4 * 0.02**2 / 3)
    assert p == pytest.approx(1 - t / math.sqrt(2 + t * t), rel=1e-9) and p == pytest.approx(0.0105707, abs=1e-7)


def test_combined_interval_one_seed_is_normal_and_none_is_nan():
    from lossbench.report.stats import combined_interval

    # se = sd of the bootstrap = sqrt(4 * .02^2 / 3) = .0230940; z_.975 = 1.959964 -> half .0452634
    # z = .04 / .0230940 = 1.732051, p = erfc(z / sqrt 2) = .0832645
    boot = 0.04 + np.array([[-0.02], [0.02], [-0.02], [0.02]])
    mean, lo, hi, p = combined_interval([0.04], boot)
    assert mean == pytest.approx(0.04) and hi - mean == pytest.approx(0.0452634, abs=1e-7)
    assert lo == pytest.approx(0.04 - 0.0452634, abs=1e-7)
    assert p == pytest.approx(math.erfc(0.04 / math.sqrt(4 * 0.02**2 / 3) / math.sqrt(2)), rel=1e-9)
    assert all(math.isnan(v) for v in combined_interval([], np.zeros((10, 0))))
    with pytest.raises(ValueError, match=r"\(n_boot >= 2, 3\)"):
        combined_interval([0.1, 0.2, 0.3], np.zeros((10, 2)))


def test_combined_interval_of_a_paired_difference_cancels_shared_image_noise():
    """Two methods whose resampled values move together: A - B keeps only the seed noise."""
    from lossbench.report.stats import combined_interval

    rng = np.random.default_rng(4)
    image_noise = rng.normal(0, 0.05, size=(500, 1))
    a, b = np.array([0.52, 0.55, 0.50]), np.array([0.40, 0.41, 0.42])
    diff = combined_interval(a - b, (a + image_noise) - (b + image_noise))
    assert diff[:3] == pytest.approx(t_interval(a - b)[0:1] + t_interval(a - b)[2:4])
    assert combined_interval(a, a + image_noise)[2] - combined_interval(a, a + image_noise)[1] > diff[2] - diff[1]


# --- paired comparisons pair runs by seed ----------------------------------------------------------

def test_comparison_of_arms_with_different_seeds_pairs_by_seed():
    """Arm A has seeds 0, 1, 2 and arm B seeds 1, 2, 3, their runs in no order in the frame: the
    difference is taken over seeds 1 and 2, seed with seed, values and bootstrap columns alike.

    A: seed 0 .50, 1 .60, 2 .70; B: seed 1 .40, 2 .45, 3 .90. Common seeds 1, 2: differences
    .20, .25 -> mean .225, sd(ddof 1) .0353553. Bootstrap: run r on replicate b is its value +
    s_r e_b with e = (-.01, +.01, -.01, +.01) and s = seed-by-seed scales (A: 0, 1, 3; B: 0, 1, 5),
    so A - B on replicate b, averaged over seeds 1, 2, is .225 + ((1 - 0) + (3 - 1)) / 2 e_b and the
    bootstrap variance is 1.5^2 * 4 * .01^2 / 3 = .0003. se^2 = .0353553^2 / 2 + .0003 = .000925,
    one comparison (Holm level .95): half = t_{.975, 1} se = 12.706205 * .0304138.
    (Paired by position, seed 0 of A would meet seed 1 of B: .10, .15, -.20, mean .0167.)"""
    import pandas as pd

    from lossbench.report.sweep import arm, compare

    rows = [("B", 3, 0.90, 5), ("A", 2, 0.70, 3), ("B", 1, 0.40, 0), ("A", 0, 0.50, 0), ("B", 2, 0.45, 1),
            ("A", 1, 0.60, 1)]
    df = pd.DataFrame(rows, columns=["condition", "seed", "test_mAP50", "scale"])
    e = np.array([-0.01, 0.01, -0.01, 0.01])
    boot = df["test_mAP50"].to_numpy()[None, :] + np.outer(e, df["scale"].to_numpy())
    a, b = arm(df, "A"), arm(df, "B")
    assert a == {2: 1, 0: 3, 1: 5} and b == {3: 0, 1: 2, 2: 4}  # seed -> row
    out = compare([("g", "A", a, "B", b)], df["test_mAP50"].to_numpy(dtype=float), boot)
    r = out.iloc[0]
    assert (r["n"], r["seeds"]) == (2, "1,2")
    assert r["diff"] == pytest.approx(0.225, abs=1e-12)
    se = math.sqrt(0.05**2 / 2 / 2 + 1.5**2 * 4 * 0.01**2 / 3)  # sd^2 = (.025^2 * 2) / 1 = .05^2 / 2
    assert se == pytest.approx(math.sqrt(0.000925), rel=1e-12)
    assert r["level"] == pytest.approx(0.95)
    assert (r["lo"], r["hi"]) == pytest.approx((0.225 - 12.706205 * se, 0.225 + 12.706205 * se), abs=1e-6)
    # df 1: P(|T| > t) = 1 - 2 atan(t) / pi
    t = 0.225 / se
    assert r["p"] == pytest.approx(1 - 2 * math.atan(t) / math.pi, rel=1e-9)
    assert r["verdict"] == "not resolved"
    # only seed 1 in common with a third arm: one pair, no interval
    one = compare([("g", "A", a, "C", {1: 2, 7: 0})], df["test_mAP50"].to_numpy(dtype=float), boot).iloc[0]
    assert (one["n"], one["seeds"], one["verdict"]) == (1, "1", "not resolved (one seed)")
    assert one["diff"] == pytest.approx(0.60 - 0.40, abs=1e-12)


# --- the pooled-seed design's pieces: bounded, pooled variance, Welch df, power, collapse ------------------------

def test_bounded_intersects_with_the_range():
    from lossbench.report.stats import bounded

    assert bounded(-3.0, 12.5, 0.0, 100.0) == (0.0, 12.5)
    assert bounded(95.0, 130.0, 0.0, 100.0) == (95.0, 100.0)
    assert bounded(-250.0, 180.0, -100.0, 100.0) == (-100.0, 100.0)
    assert bounded(20.0, 30.0, 0.0, 100.0) == (20.0, 30.0)
    assert all(math.isnan(v) for v in bounded(math.nan, 3.0, 0.0, 100.0))
    with pytest.raises(ValueError, match="does not meet"):
        bounded(101.0, 120.0, 0.0, 100.0)


def test_pooled_variance_hand_worked_and_against_f_oneway():
    from scipy import stats as st

    from lossbench.report.stats import pooled_variance

    # A 60, 62, 64: mean 62, SS 4 + 0 + 4 = 8; B 50, 53, 56: mean 53, SS 9 + 0 + 9 = 18
    # N - k = 6 - 2 = 4 -> s2 = 26 / 4 = 6.5
    s2, df = pooled_variance([[60, 62, 64], [50, 53, 56]])
    assert (s2, df) == (6.5, 4)
    # a single run adds no df and no SS; NaNs are dropped; no df at all -> NaN
    assert pooled_variance([[60, 62, 64], [50, 53, 56], [70.0], [math.nan]]) == (6.5, 4)
    s2, df = pooled_variance([[1.0], [2.0]])
    assert math.isnan(s2) and df == 0
    # independent reference: one-way ANOVA's residual mean square, MS_within = MS_between / F
    rng = np.random.default_rng(1)
    groups = [rng.normal(mu, 3, size=n) for mu, n in ((50, 3), (55, 6), (40, 2), (61, 4))]
    grand = np.concatenate(groups).mean()
    ms_between = sum(len(g) * (g.mean() - grand) ** 2 for g in groups) / (len(groups) - 1)
    f = st.f_oneway(*groups).statistic
    s2, df = pooled_variance(groups)
    assert df == 15 - 4 and s2 == pytest.approx(ms_between / f, rel=1e-10)


def test_welch_df_hand_worked_and_against_scipy_welch():
    from scipy import stats as st

    from lossbench.report.stats import welch_df

    # pooled variances 6.5 (n 3, df 4) and 3.25 (n 2, df 4): v = 13/6, 13/8, sum 91/24;
    # df = (91/24)^2 / ((13/6)^2/4 + (13/8)^2/4) = (8281/576) / (4225/2304) = 33124/4225 = 7.84
    assert welch_df(6.5, 3, 3.25, 2, df_a=4, df_b=4) == pytest.approx(7.84, rel=1e-12)
    # with df = n - 1 it is Welch's test
    a, b = np.array([1.0, 2.5, 3.0, 7.0]), np.array([2.0, 2.2, 9.0, 4.0, 5.5, 1.0])
    ref = st.ttest_ind(a, b, equal_var=False).df
    assert welch_df(a.var(ddof=1), 4, b.var(ddof=1), 6) == pytest.approx(ref, rel=1e-10)
    assert math.isnan(welch_df(math.nan, 3, 1.0, 3)) and math.isnan(welch_df(1.0, 0, 1.0, 3))


def test_detectable_difference_approaches_the_normal_formula_at_large_df():
    from scipy import stats as st

    from lossbench.report.stats import detectable_difference

    # df -> inf: delta = (z_{1 - alpha/2} + z_{power}) sigma sqrt(1/n_a + 1/n_b) (the far tail adds ~1e-6 power)
    z = st.norm.ppf(0.975) + st.norm.ppf(0.8)
    assert z == pytest.approx(1.959964 + 0.841621, abs=1e-6)
    got = detectable_difference(2.0, 3, 5, 1e7, 0.05)
    assert got == pytest.approx(z * 2.0 * math.sqrt(1 / 3 + 1 / 5), rel=1e-4)
    # at small df the t-test needs more
    assert detectable_difference(2.0, 3, 5, 4, 0.05) > got * 1.2
    # two sigmas equal to one give the same; zero or no df give 0 / NaN
    assert detectable_difference((2.0, 2.0), 3, 5, 6, 0.05) == pytest.approx(detectable_difference(2.0, 3, 5, 6, 0.05))
    assert detectable_difference(0.0, 3, 3, 4, 0.05) == 0.0
    assert math.isnan(detectable_difference(2.0, 3, 3, 0, 0.05)) and math.isnan(detectable_difference(2.0, 0, 3, 4, 0.05))


def test_detectable_difference_has_the_power_by_monte_carlo():
    """Independent check: simulate the pooled one-way model (4 settings x 3 seeds, df 8), the true difference between
    settings 0 and 1 the returned delta; the pooled t-test at alpha / 3 rejects in 80 % of 100 000 studies."""
    from scipy import stats as st

    from lossbench.report.stats import detectable_difference

    sigma, alpha = 1.5, 0.05 / 3
    delta = detectable_difference(sigma, 3, 3, 8, alpha, power=0.8)
    rng = np.random.default_rng(12345)
    x = rng.normal(0.0, sigma, size=(100_000, 4, 3))
    x[:, 0, :] += delta
    s2 = ((x - x.mean(axis=2, keepdims=True)) ** 2).sum(axis=(1, 2)) / 8
    t = (x[:, 0].mean(axis=1) - x[:, 1].mean(axis=1)) / np.sqrt(s2 * (2 / 3))
    rate = float((np.abs(t) > st.t.ppf(1 - alpha / 2, 8)).mean())
    assert rate == pytest.approx(0.8, abs=0.005)  # MC sd 0.0013


def test_seeds_needed_matches_cohens_tables():
    from lossbench.report.stats import seeds_needed, two_sided_power

    # two-sample t-test, two-sided alpha .05, power .8 (Cohen 1988; R power.t.test: 63.77, 25.52, 16.71 -> ceil)
    assert seeds_needed(1.0, 0.5) == 64
    assert seeds_needed(1.0, 0.8) == 26
    assert seeds_needed(2.0, 2.0) == 17  # only delta / sigma matters
    # minimal: 16 seeds fall short
    assert two_sided_power(1.0, math.sqrt(2 / 16), 30, 0.05) < 0.8 <= two_sided_power(1.0, math.sqrt(2 / 17), 32, 0.05)
    # variance pooled from many other settings: the normal answer ceil(2 (z + z)^2) = ceil(15.70) = 16
    assert seeds_needed(1.0, 1.0, df_extra=10**6) == 16
    # a huge effect with pooled df: one seed per arm suffices
    assert seeds_needed(1.0, 20.0, df_extra=10) == 1
    with pytest.raises(ValueError):
        seeds_needed(1.0, 0.0)


def test_fisher_collapse_hand_worked():
    from lossbench.report.stats import fisher_collapse

    # margins 3 collapsed of 6, 3 per arm: P(k_a = 3, 2, 1, 0) = 1, 9, 9, 1 / 20 -> 3/3 vs 0/3: (1 + 1) / 20
    assert fisher_collapse(3, 3, 0, 3) == pytest.approx(0.1, abs=1e-12)
    # 2 collapsed of 6: P(k_a = 2, 1, 0) = 3, 9, 3 / 15 -> 2/3 vs 0/3: (3 + 3) / 15
    assert fisher_collapse(2, 3, 0, 3) == pytest.approx(0.4, abs=1e-12)
    assert fisher_collapse(0, 3, 0, 3) == 1.0 and fisher_collapse(1, 3, 0, 3) == pytest.approx(1.0)
    assert math.isnan(fisher_collapse(0, 0, 1, 3))
