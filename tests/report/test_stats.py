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
