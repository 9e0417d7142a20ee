"""Summary statistics over seeds: mean, std and Student-t 95% intervals."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import stats

CONFIDENCE = 0.95


def t_interval(values: Sequence[float], confidence: float = CONFIDENCE) -> tuple[float, float, float, float]:
    """``(mean, std, lo, hi)`` of ``values``: sample std (ddof=1) and the t-interval of the mean.

    With one value the std and the interval are NaN (no spread can be
    estimated); with none, everything is NaN.
    """
    x = np.asarray([v for v in values if v is not None and not math.isnan(v)], dtype=float)
    n = len(x)
    if n == 0:
        return (math.nan,) * 4
    mean = float(x.mean())
    if n == 1:
        return mean, math.nan, math.nan, math.nan
    std = float(x.std(ddof=1))
    half = float(stats.t.ppf(0.5 + confidence / 2, df=n - 1)) * std / math.sqrt(n)
    return mean, std, mean - half, mean + half


def paired_difference(a: dict[int, float], b: dict[int, float],
                      confidence: float = CONFIDENCE) -> tuple[float, float, float, int]:
    """Mean of ``a[s] - b[s]`` over the seeds both have, with its t-interval.

    Seeds pair runs that share the data order and the random init, so the
    paired interval removes that shared noise. Returns ``(mean, lo, hi, n)``.
    """
    common = sorted(set(a) & set(b))
    diffs = [a[s] - b[s] for s in common]
    mean, _, lo, hi = t_interval(diffs, confidence)
    return mean, lo, hi, len(common)
