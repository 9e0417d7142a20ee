"""Summary statistics over seeds: mean, std and Student-t 95% intervals, paired differences,
Holm's correction, and intervals combining seed noise with test-image noise (the bootstrap of
VOC mAP over test images is :func:`lossbench.records.bootstrap_map`); and the pieces of the
pooled-seed design (:mod:`lossbench.report.design`): intervals bounded to the metric's range, the
pooled one-way variance, Welch–Satterthwaite df, detectable differences and seeds needed at a given
power (noncentral t), and Fisher's exact test of collapse rates."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np
from scipy import optimize, stats

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


# --- the pooled-seed design (lossbench.report.design): ranges, pooled variance, Welch df, power, collapse ----------

def bounded(lo: float, hi: float, lower: float, upper: float) -> tuple[float, float]:
    """The interval ``[lo, hi]`` intersected with the parameter's range ``[lower, upper]``.

    A confidence set ``C`` for a parameter ``theta`` that always lies in ``R`` covers it exactly when ``C ∩ R`` does
    (``theta ∈ C  <=>  theta ∈ C ∩ R``), so the intersection keeps the coverage and is never longer. For a mean
    mAP in percent ``R = [0, 100]``, for a difference of two ``[-100, 100]``. NaN ends stay NaN. An interval that
    misses the range entirely (impossible for an interval around an estimate inside it) raises ``ValueError``.
    """
    if math.isnan(lo) or math.isnan(hi):
        return math.nan, math.nan
    if lo > hi or lower > upper:
        raise ValueError(f"bounded: not intervals: [{lo}, {hi}], [{lower}, {upper}]")
    new_lo, new_hi = max(lo, lower), min(hi, upper)
    if new_lo > new_hi:
        raise ValueError(f"bounded: [{lo}, {hi}] does not meet the range [{lower}, {upper}]")
    return float(new_lo), float(new_hi)


def pooled_variance(groups: Iterable[Sequence[float]]) -> tuple[float, int]:
    """``(s2, df)``: the residual variance of a one-way model (one mean per group) and its degrees of freedom.

    ``s2 = sum_g sum_i (x_gi - mean_g)^2 / (N - k)`` over the ``N`` values of the ``k`` non-empty groups, ``df = N - k``
    (a group of one value adds nothing to either). NaN values are dropped; ``s2`` is NaN when ``df = 0``.
    """
    ss, n_total, k = 0.0, 0, 0
    for g in groups:
        x = np.asarray([v for v in g if v is not None and not math.isnan(v)], dtype=float)
        if len(x) == 0:
            continue
        ss += float(((x - x.mean()) ** 2).sum())
        n_total += len(x)
        k += 1
    df = n_total - k
    return (ss / df if df > 0 else math.nan), df


def welch_df(var_a: float, n_a: int, var_b: float, n_b: int,
             df_a: float | None = None, df_b: float | None = None) -> float:
    """Welch–Satterthwaite degrees of freedom of ``var_a / n_a + var_b / n_b``.

    ``df = (v_a + v_b)^2 / (v_a^2 / df_a + v_b^2 / df_b)`` with ``v = var / n``. ``df_a``, ``df_b`` are the degrees of
    freedom of the variance estimates: ``n - 1`` (the default, Welch's test) or, for a variance pooled over the
    settings of a family, that model's residual df. A term with infinite df (a known variance) adds nothing to the
    denominator. NaN where it cannot be computed (no variance, ``n = 0``, df <= 0, both terms 0).
    """
    df_a = n_a - 1 if df_a is None else df_a
    df_b = n_b - 1 if df_b is None else df_b
    if n_a <= 0 or n_b <= 0 or df_a <= 0 or df_b <= 0 or math.isnan(var_a) or math.isnan(var_b):
        return math.nan
    v_a, v_b = var_a / n_a, var_b / n_b
    den = v_a**2 / df_a + v_b**2 / df_b
    return (v_a + v_b) ** 2 / den if den > 0 else math.nan


def two_sided_power(delta: float, se: float, df: float, alpha: float) -> float:
    """Power of the two-sided t-test at level ``alpha`` (``|D / se_hat| > c = t_{df, 1 - alpha/2}``) when the true
    difference is ``delta`` and the standard error ``se``: ``T ~ nct(df, delta / se)``, power ``P(T > c) + P(T < -c)``.
    """
    c = float(stats.t.ppf(1 - alpha / 2, df))
    nc = delta / se
    # P(T < -c | nc) = P(T > c | -nc); scipy's nct tails can come back NaN far from the centre, where they are ~0
    upper = float(stats.nct.sf(c, df, nc))
    if math.isnan(upper):
        upper = 1 - float(stats.nct.cdf(c, df, nc))
    lower = float(stats.nct.sf(c, df, -nc))
    if math.isnan(lower):
        lower = float(stats.nct.cdf(-c, df, nc))
    return float(np.nan_to_num(upper, nan=float(nc > 0)) + np.nan_to_num(lower, nan=float(nc < 0)))


def detectable_difference(sigma: float | tuple[float, float], n_a: int, n_b: int, df: float, alpha: float,
                          power: float = 0.8, extra_var: float = 0.0) -> float:
    """The smallest true difference ``delta > 0`` that a two-sided t-test at level ``alpha`` detects with ``power``.

    The difference of two means of ``n_a`` and ``n_b`` runs has standard error ``se = sigma sqrt(1/n_a + 1/n_b)``
    (``sigma`` one common seed sd, e.g. pooled over a family) or ``se = sqrt(sigma_a^2/n_a + sigma_b^2/n_b)``
    (``sigma = (sigma_a, sigma_b)``, two families), plus ``extra_var`` (e.g. the test-image bootstrap variance of the
    difference) under the root. ``df``: the degrees of freedom of the variance estimate (residual df of the pooled
    model, or Welch–Satterthwaite). Solves ``two_sided_power(delta, se, df, alpha) = power`` for ``delta`` with
    ``scipy.optimize.brentq`` on the noncentral t (``scipy.stats.nct``). For the corrected level of a family of ``m``
    comparisons pass ``alpha / m`` (Bonferroni: never above any Holm step's level, so the answer is conservative).
    NaN where ``se`` or ``df`` cannot be computed; 0 when ``se = 0``.
    """
    if n_a <= 0 or n_b <= 0 or not df > 0 or not 0 < alpha < power < 1:
        return math.nan
    if isinstance(sigma, tuple):
        var = sigma[0] ** 2 / n_a + sigma[1] ** 2 / n_b
    else:
        var = sigma**2 * (1 / n_a + 1 / n_b)
    se = math.sqrt(var + extra_var) if not math.isnan(var + extra_var) else math.nan
    if math.isnan(se):
        return math.nan
    if se == 0:
        return 0.0
    upper = (stats.norm.ppf(1 - alpha / 2) + stats.norm.ppf(power)) * se
    while two_sided_power(upper, se, df, alpha) < power:
        upper *= 2
    return float(optimize.brentq(lambda d: two_sided_power(d, se, df, alpha) - power, 0.0, upper,
                                 xtol=1e-12 * se, rtol=1e-12))


def seeds_needed(sigma: float, delta: float, alpha: float = 1 - CONFIDENCE, power: float = 0.8,
                 df_extra: int = 0, max_n: int = 1_000_000) -> int:
    """The smallest number ``n`` of seeds per arm with which a two-sided t-test at level ``alpha`` detects a true
    difference ``delta`` between two arms of seed sd ``sigma`` with at least ``power``.

    ``se = sigma sqrt(2 / n)``; the variance estimate has ``df = 2 (n - 1) + df_extra`` degrees of freedom, where
    ``df_extra`` is the residual df the other settings of a family add to the pooled variance (0: a plain two-sample
    t-test; then ``n >= 2``, else ``n >= 1``). For the corrected level of ``m`` comparisons pass ``alpha / m``.
    Raises ``ValueError`` for ``delta <= 0``, ``sigma <= 0`` or when ``max_n`` seeds do not suffice.
    """
    if not delta > 0 or not sigma > 0:
        raise ValueError(f"seeds_needed: need delta > 0 and sigma > 0, got delta={delta}, sigma={sigma}")

    def enough(n: int) -> bool:
        return two_sided_power(delta, sigma * math.sqrt(2 / n), 2 * (n - 1) + df_extra, alpha) >= power

    lo = 1 if df_extra > 0 else 2  # power grows with n: double until enough, then bisect
    if enough(lo):
        return lo
    hi = lo
    while not enough(hi):
        lo, hi = hi, hi * 2
        if hi > max_n:
            if enough(max_n):
                hi = max_n
                break
            raise ValueError(f"seeds_needed: more than {max_n} seeds per arm")
    while hi - lo > 1:  # enough(hi), not enough(lo)
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if enough(mid) else (mid, hi)
    return hi


def fisher_collapse(k_a: int, n_a: int, k_b: int, n_b: int) -> float:
    """Two-sided p-value of Fisher's exact test for a difference in collapse rate: ``k_a`` of ``n_a`` runs collapsed
    in A, ``k_b`` of ``n_b`` in B (``scipy.stats.fisher_exact`` on ``[[k_a, n_a - k_a], [k_b, n_b - k_b]]``).
    NaN when an arm has no run. E.g. 3/3 against 0/3: the tables with these margins have probabilities
    ``1, 9, 9, 1`` / 20, so ``p = (1 + 1) / 20 = 0.1``."""
    if n_a <= 0 or n_b <= 0:
        return math.nan
    if not (0 <= k_a <= n_a and 0 <= k_b <= n_b):
        raise ValueError(f"fisher_collapse: counts {k_a}/{n_a}, {k_b}/{n_b}")
    return float(stats.fisher_exact([[k_a, n_a - k_a], [k_b, n_b - k_b]], alternative="two-sided").pvalue)
