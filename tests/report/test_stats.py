import math

import pytest

from lossbench.report.stats import paired_difference, t_interval


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


def test_paired_difference_uses_common_seeds_only():
    # seeds 0, 1 common: diffs 0.1, 0.3 -> mean 0.2; seed 2 only in a
    mean, lo, hi, n = paired_difference({0: 0.5, 1: 0.7, 2: 0.9}, {0: 0.4, 1: 0.4})
    assert n == 2 and mean == pytest.approx(0.2)
    assert lo < 0.2 < hi


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

    from lossbench.report.stats import holm, paired_t_pvalue, t_interval

    rng = np.random.default_rng(0)
    for _ in range(200):
        diffs = [rng.normal(rng.uniform(-1, 1), 1, size=5) for _ in range(4)]
        adj, lev = holm([paired_t_pvalue(d) for d in diffs])
        for d, a, c in zip(diffs, adj, lev):
            _, _, lo, hi = t_interval(d, confidence=c)
            assert (lo > 0 or hi < 0) == (a <= 0.05 + 1e-12)


def test_paired_t_pvalue_matches_scipy():
    from scipy import stats as st

    from lossbench.report.stats import paired_t_pvalue

    a, b = [0.31, 0.29, 0.35, 0.30], [0.28, 0.27, 0.30, 0.31]
    assert paired_t_pvalue([x - y for x, y in zip(a, b)]) == pytest.approx(st.ttest_rel(a, b).pvalue)
