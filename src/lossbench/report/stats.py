"""Summary statistics over seeds: mean, std and Student-t 95% intervals; VOC mAP recomputed from
per-detection records, its bootstrap over test images, and intervals combining both noises."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
from scipy import sparse, stats

if TYPE_CHECKING:
    from lossbench.evaluation import Records

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


def paired_difference(a: dict[int, float], b: dict[int, float],
                      confidence: float = CONFIDENCE) -> tuple[float, float, float, int]:
    """``(mean, lo, hi, n)`` of ``a[s] - b[s]`` over the ``n`` seeds both have, with its t-interval
    (runs of one seed share the data order and the init: pairing removes that shared noise)."""
    common = sorted(set(a) & set(b))
    diffs = [a[s] - b[s] for s in common]
    mean, _, lo, hi = t_interval(diffs, confidence)
    return mean, lo, hi, len(common)


def paired_t_pvalue(diffs: Sequence[float]) -> float:
    """Two-sided p-value of the paired t-test of mean(diffs) = 0 (NaN with fewer than 2 pairs,
    0 when every difference is the same non-zero number, 1 when all are 0)."""
    x = np.asarray(diffs, dtype=float)
    if len(x) < 2:
        return math.nan
    sd = float(x.std(ddof=1))
    if sd == 0:
        return 1.0 if float(x.mean()) == 0 else 0.0
    t = float(x.mean()) / (sd / math.sqrt(len(x)))
    return float(2 * stats.t.sf(abs(t), df=len(x) - 1))


def holm(pvalues: Sequence[float], alpha: float = 1 - CONFIDENCE) -> tuple[list[float], list[float]]:
    """Holm's step-down correction of ``m`` p-values (Holm 1979).

    Returns ``(adjusted, levels)``: the Holm-adjusted p-values (reject where
    ``adjusted <= alpha``) and, for each hypothesis, the confidence level of an
    interval that excludes 0 exactly when Holm rejects it. The j-th smallest
    p-value is tested at ``alpha / (m - j + 1)``, so its interval has level
    ``1 - alpha / (m - j + 1)``; once a step accepts, every later hypothesis is
    accepted and keeps that step's level. NaN p-values (no interval possible)
    are left out of ``m`` and stay NaN.
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


_CHUNK_FLOATS = 4_000_000  # bootstrap_map's working set, in float64 (32 MB)


class _VocMap:
    """VOC mAP (area mode) of one run's records under any integer weighting of its test images.

    A bootstrap resample is a vector ``w`` of ``N`` image counts (``w_i`` copies of image ``i``).
    Per class ``c`` with detections in mmdet's score order, let the true positives be
    ``k = 1..K_c`` and, for each, ``tp_k = w_{img(k)}`` and ``fp_k`` = the summed weights of the
    false positives between tp ``k-1`` and tp ``k``. With ``TP_k, FP_k`` their running sums and
    ``G_c = sum_i w_i num_gts[i, c]``::

        prec_k = TP_k / (TP_k + FP_k),   env_k = max_{j >= k} prec_j,
        AP_c   = sum_k (tp_k / G_c) env_k,
        mAP    = mean of AP_c over the classes with G_c > 0   (0 when there is none).

    This is mmdet's ``average_precision(mode='area')`` on the concatenated resample: recall only
    steps at true positives, a false positive never raises the envelope above the true positive
    before it, ignored detections change nothing, and the ``w_i`` copies of a detection share its
    score and outcome, so counting them at once gives the same area as one at a time.
    """

    def __init__(self, records: Records) -> None:
        self.num_gts = np.asarray(records.num_gts, dtype=float)  # (N, C)
        n_images, n_classes = self.num_gts.shape
        tp_img, gap_tp, gap_img, self.bounds = [], [], [], []
        start = 0
        for c in range(n_classes):
            idx = np.flatnonzero(records.label == c)
            # eval_map's order: np.argsort(-scores) of the class's float32 scores in evaluation order
            order = idx[np.argsort(-np.asarray(records.score[idx], dtype=np.float32))]
            state, img = records.state[order], records.image[order]
            tps, fps = np.flatnonzero(state == 1), np.flatnonzero(state == 0)
            nxt = np.searchsorted(tps, fps)  # the tp each fp precedes (K_c: after the last, irrelevant)
            keep = nxt < len(tps)
            gap_tp.append(start + nxt[keep])
            gap_img.append(img[fps[keep]])
            tp_img.append(img[tps])
            self.bounds.append((start, start + len(tps)))
            start += len(tps)
        self.tp_img = np.concatenate(tp_img).astype(np.intp)  # (K,)
        rows, cols = np.concatenate(gap_tp), np.concatenate(gap_img)
        # (K, N): fp count of image i in front of tp k (duplicates summed)
        self.gaps = sparse.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(start, n_images))

    def __call__(self, weights: np.ndarray) -> np.ndarray:
        """``weights``: ``(B, N)`` image counts; returns the ``(B,)`` mAP of each row."""
        weights = np.asarray(weights, dtype=float)
        g = weights @ self.num_gts  # (B, C)
        tp_inc = weights[:, self.tp_img]  # (B, K)
        fp_inc = np.asarray(self.gaps @ weights.T).T  # (B, K)
        ap = np.zeros_like(g)
        for c, (s, e) in enumerate(self.bounds):
            if e == s:
                continue
            tp = np.cumsum(tp_inc[:, s:e], axis=1)
            prec = tp / np.maximum(tp + np.cumsum(fp_inc[:, s:e], axis=1), 1)
            env = np.maximum.accumulate(prec[:, ::-1], axis=1)[:, ::-1]
            ap[:, c] = (tp_inc[:, s:e] * env).sum(axis=1) / np.maximum(g[:, c], 1)
        counted = g > 0
        return np.where(counted.any(axis=1), (ap * counted).sum(axis=1) / np.maximum(counted.sum(axis=1), 1), 0.0)


def _image_counts(images: np.ndarray | Sequence[int], n_images: int) -> np.ndarray:
    images = np.asarray(images, dtype=np.intp)
    if images.size and (images.min() < 0 or images.max() >= n_images):
        raise ValueError(f"image indices must lie in [0, {n_images}), got {images.min()}..{images.max()}")
    return np.bincount(images, minlength=n_images).astype(float)


def voc_map(records: Records, images: np.ndarray | Sequence[int] | None = None) -> float:
    """VOC mAP (area under the monotone precision envelope) of one run, as mmdet's ``eval_map``
    computes it, on the test images ``images``.

    Args:
        records: one run's :class:`lossbench.evaluation.Records`.
        images: image indices, repeats allowed (an image listed twice counts its detections and
            its gts twice, as a bootstrap resample does); None: every image once.

    Classes with no counted gt among ``images`` are left out of the mean (mmdet). Detections are
    ordered as ``eval_map`` orders the full test set (``np.argsort(-score)`` per class); on a
    resample, ties in score between different detections keep that order.
    """
    n_images = records.num_gts.shape[0]
    w = np.ones(n_images) if images is None else _image_counts(images, n_images)
    return float(_VocMap(records)(w[None])[0])


def bootstrap_map(records_list: Sequence[Records], n_boot: int = 1000, seed: int = 0) -> np.ndarray:
    """mAP of each run on ``n_boot`` bootstrap resamples of the test images, shared by all runs.

    Resample ``b`` is ``np.random.default_rng(seed).integers(0, N, size=(n_boot, N))[b]``: ``N``
    test images drawn with replacement. Every run is evaluated on the same resamples, so the
    columns of a paired difference share the test-set noise.

    Args:
        records_list: ``R`` runs' records over the same test images in the same order.
        n_boot: number of resamples.
        seed: seed of the resampling.

    Returns:
        ``(n_boot, R)`` array: ``out[b, r] = voc_map(records_list[r], resample b)``.

    Raises:
        ValueError: when the runs' image ids (or their per-class gt counts) differ.
    """
    if not records_list:
        return np.zeros((n_boot, 0))
    first = records_list[0]
    for r, rec in enumerate(records_list[1:], start=1):
        if rec.image_ids.shape != first.image_ids.shape:
            raise ValueError(f"bootstrap_map: run {r} has {len(rec.image_ids)} test images, run 0 has "
                             f"{len(first.image_ids)}")
        diff = np.flatnonzero(rec.image_ids != first.image_ids)
        if diff.size:
            i = diff[0]
            raise ValueError(f"bootstrap_map: runs 0 and {r} differ in test image {i}: "
                             f"id {first.image_ids[i]!r} vs {rec.image_ids[i]!r} ({diff.size} images differ)")
        if not np.array_equal(rec.num_gts, first.num_gts):
            raise ValueError(f"bootstrap_map: runs 0 and {r} have the same image ids but different gt counts")
    n_images = first.num_gts.shape[0]
    draws = np.random.default_rng(seed).integers(0, n_images, size=(n_boot, n_images))
    flat = (draws + n_images * np.arange(n_boot)[:, None]).ravel()
    counts = np.bincount(flat, minlength=n_boot * n_images).reshape(n_boot, n_images).astype(float)
    out = np.empty((n_boot, len(records_list)))
    for r, rec in enumerate(records_list):
        voc = _VocMap(rec)
        chunk = max(1, _CHUNK_FLOATS // (n_images + 4 * len(voc.tp_img)))  # resamples at once
        for s in range(0, n_boot, chunk):
            out[s:s + chunk, r] = voc(counts[s:s + chunk])
    return out


def combined_interval(per_seed: Sequence[float] | np.ndarray, boot: np.ndarray,
                      confidence: float = CONFIDENCE) -> tuple[float, float, float, float]:
    """``(mean, lo, hi, p)`` of a mean over ``n`` seeds with seed noise and test-set noise.

    Args:
        per_seed: ``(n,)`` the metric of each seed on the full test set (or, for a paired
            difference A - B, ``a - b`` seed by seed).
        boot: ``(n_boot, n)`` the same per-seed values on bootstrap resamples of the test images
            (for A - B, ``boot_a - boot_b`` on the same resamples, so the shared image noise
            cancels), e.g. from :func:`bootstrap_map`.
        confidence: interval level.

    With ``x = per_seed`` and ``m_b = mean_j boot[b, j]`` (the seed mean on resample ``b``),
    the two noises being independent::

        mean = mean(x)
        se^2 = var(x, ddof=1) / n + var(m, ddof=1)       (seeds + test images)
        lo, hi = mean -/+ t_{n-1, (1+confidence)/2} * se
        p = 2 * P(T_{n-1} > |mean| / se)                 (two-sided, mean = 0)

    With ``n = 1`` there is no seed term and the t has infinitely many degrees of freedom (a
    normal interval on the test-set noise alone: it ignores the unmeasured seed noise). With
    ``n = 0`` everything is NaN. When ``se = 0``: ``lo = hi = mean``, ``p`` = 1 if ``mean = 0``
    else 0.
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
