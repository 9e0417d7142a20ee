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

    from lossbench.report.tables import arm, compare

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
