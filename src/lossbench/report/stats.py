"""Summary statistics over seeds: mean, std and Student-t 95% intervals, paired differences,
Holm's correction, and intervals combining seed noise with test-image noise (the bootstrap of
VOC mAP over test images is :func:`lossbench.records.bootstrap_map`)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import stats

CONFIDENCE = 0.95


def t_interval(values: Sequence[float], confidence: float = CONFIDENCE) -> tuple[float, float, float, float]:
    """``(mean, std, lo, hi)`` of ``values``: sample std (ddof=1) and the t-interval of the mean;
    NaN where it cannot be estimated (std and interval from one value, everything from none)."""
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


def holm(pvalues: Sequence[float], alpha: float = 1 - CONFIDENCE) -> tuple[list[float], list[float]]:
    """Holm's step-down correction of ``m`` p-values (Holm 1979).

    Returns ``(adjusted, levels)``: the Holm-adjusted p-values (reject where ``adjusted <= alpha``) and, for each
    hypothesis, the confidence level of an interval that excludes 0 exactly when Holm rejects it. The j-th smallest
    p-value is tested at ``alpha / (m - j + 1)``, so its interval has level ``1 - alpha / (m - j + 1)``; once a step
    accepts, every later hypothesis is accepted and keeps that step's level. NaN p-values (no interval possible) are
    left out of ``m`` and stay NaN.
    """
    p = list(pvalues)
    valid = sorted((v, i) for i, v in enumerate(p) if not math.isnan(v))
    m = len(valid)
    adjusted, levels = [math.nan] * len(p), [math.nan] * len(p)
    running, accepted_at = 0.0, None
    for j, (v, i) in enumerate(valid):
        running = max(running, min(1.0, (m - j) * v))
        adjusted[i] = running
        if accepted_at is None and v > alpha / (m - j):
            accepted_at = j
        step = j if accepted_at is None else accepted_at
        levels[i] = 1 - alpha / (m - step)
    return adjusted, levels


def combined_interval(per_seed: Sequence[float] | np.ndarray, boot: np.ndarray,
                      confidence: float = CONFIDENCE) -> tuple[float, float, float, float]:
    """``(mean, lo, hi, p)`` of a mean over ``n`` seeds with seed noise and test-set noise.

    Args:
        per_seed: ``(n,)`` the metric of each seed on the full test set (for a paired difference A - B: ``a - b``).
        boot: ``(n_boot, n)`` the same per-seed values on bootstrap resamples of the test images (for A - B,
            ``boot_a - boot_b`` on the same resamples, so the shared image noise cancels), e.g. from
            :func:`lossbench.records.bootstrap_map`.
        confidence: interval level.

    With ``x = per_seed`` and ``m_b = mean_j boot[b, j]`` (the seed mean on resample ``b``),
    the two noises being independent::

        mean = mean(x)
        se^2 = var(x, ddof=1) / n + var(m, ddof=1)       (seeds + test images)
        lo, hi = mean -/+ t_{n-1, (1+confidence)/2} * se
        p = 2 * P(T_{n-1} > |mean| / se)                 (two-sided, mean = 0)

    With ``n = 1`` there is no seed term and the t has infinitely many degrees of freedom (a normal interval on the
    test-set noise alone: it ignores the unmeasured seed noise). With ``n = 0`` everything is NaN. When ``se = 0``:
    ``lo = hi = mean``, ``p`` = 1 if ``mean = 0`` else 0.
    """
    x = np.asarray(per_seed, dtype=float)
    boot = np.asarray(boot, dtype=float)
    n = len(x)
    if n == 0:
        return (math.nan,) * 4
    if boot.ndim != 2 or boot.shape[1] != n or boot.shape[0] < 2:
        raise ValueError(f"combined_interval: boot must be (n_boot >= 2, {n}) for {n} seeds, got {boot.shape}")
    mean = float(x.mean())
    seed_var = float(x.var(ddof=1)) / n if n > 1 else 0.0
    se = math.sqrt(seed_var + float(boot.mean(axis=1).var(ddof=1)))
    df = n - 1 if n > 1 else math.inf
    if se == 0:
        return mean, mean, mean, 1.0 if mean == 0 else 0.0
    half = float(stats.t.ppf((1 + confidence) / 2, df)) * se
    p = float(2 * stats.t.sf(abs(mean) / se, df))
    return mean, mean - half, mean + half, p
