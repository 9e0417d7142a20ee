"""Per-detection records of one run's test evaluation, and the VOC mAP@0.5 they give on any resample of the test images.

A run's test evaluation (:class:`lossbench.training.evaluation.DetectionRecords`, an MMEngine metric) writes its
:class:`Records` with :func:`save_records`; the report reads them back with :func:`load_records` and recomputes VOC mAP
on the full test set (:func:`voc_map`) and on bootstrap resamples of the test images shared by every run
(:func:`bootstrap_map`).

This module needs numpy and the standard library only: reading and scoring records loads neither MMDetection nor torch.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

TP, FP, IGNORED = 1, 0, -1
"""Values of :attr:`Records.state`: a true positive, a false positive, and a detection matched to
an ignored (difficult / crowd) gt, which mmdet counts as neither."""

RECORD_KEYS = ("image", "label", "score", "state", "num_gts", "image_ids", "iou_thr")


@dataclass(frozen=True, eq=False)
class Records:
    """One run's evaluation of ``N`` test images, ``C`` classes and ``D`` detections.

    Detections are in evaluation order: by image, then by class, then in the model's output order within a class. This
    is the order in which mmdet's ``eval_map`` concatenates a class's detections before its (unstable) sort by score, so
    sorting the same float32 scores the same way reproduces its order of tied scores.
    """

    image: np.ndarray  # (D,) int32, the detection's image, an index into image_ids
    label: np.ndarray  # (D,) int16, the predicted class in [0, C)
    score: np.ndarray  # (D,) float32
    state: np.ndarray  # (D,) int8, TP (1), FP (0) or IGNORED (-1: matched an ignored gt)
    num_gts: np.ndarray  # (N, C) int32, counted (not ignored) gts per image and class
    image_ids: np.ndarray  # (N,) str, the dataset's img_id of each image, in evaluation order
    iou_thr: float  # the IoU threshold of a match

    def __post_init__(self) -> None:
        d = len(self.image)
        if any(a.ndim != 1 or len(a) != d for a in (self.label, self.score, self.state)):
            raise ValueError("Records: image, label, score and state must be 1-D arrays of one length, got "
                             f"shapes {[a.shape for a in (self.image, self.label, self.score, self.state)]}")
        if self.num_gts.ndim != 2 or self.image_ids.shape != (self.num_gts.shape[0],):
            raise ValueError(f"Records: num_gts must be (N, C) and image_ids (N,), got {self.num_gts.shape} "
                             f"and {self.image_ids.shape}")
        n, c = self.num_gts.shape
        if d and (self.image.min() < 0 or self.image.max() >= n or self.label.min() < 0 or self.label.max() >= c):
            raise ValueError(f"Records: image indices must lie in [0, {n}) and labels in [0, {c})")


def save_records(records: Records, path: str | Path) -> Path:
    """Write ``records`` to ``path`` (``np.savez_compressed``, no pickles) atomically: a temporary
    file beside ``path``, renamed onto it once complete."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez_compressed(f, **{k: np.asarray(getattr(records, k)) for k in RECORD_KEYS})
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load_records(path: str | Path) -> Records:
    """Read what :func:`save_records` wrote; a missing key is an error naming the file."""
    with np.load(path, allow_pickle=False) as z:
        missing = [k for k in RECORD_KEYS if k not in z.files]
        if missing:
            raise KeyError(f"{path}: detection records lack {missing} (expected keys {list(RECORD_KEYS)})")
        arrays = {k: z[k] for k in RECORD_KEYS}
    return Records(image=arrays["image"], label=arrays["label"], score=arrays["score"], state=arrays["state"],
                   num_gts=arrays["num_gts"], image_ids=arrays["image_ids"], iou_thr=float(arrays["iou_thr"]))


_CHUNK_FLOATS = 4_000_000  # bootstrap_map's working set, in float64 (32 MB), besides the gather
_GATHER_FLOATS = 250_000  # fp weights gathered at once by _VocMap.fp_increments (2 MB)


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

    The false positives that precede some true positive are kept in tp order (``gap_img``: their
    images; ``gap_start``: where the fps in front of tp ``gap_row[j]`` begin), so ``fp_k`` of every
    resample is a gather of its weights summed by ``np.add.reduceat``. The weights are integer
    image counts, so these sums (and ``G_c``) are exact in float64 in any order.
    """

    def __init__(self, records: Records) -> None:
        self.num_gts = np.asarray(records.num_gts, dtype=float)  # (N, C)
        n_classes = self.num_gts.shape[1]
        tp_img, gap_tp, gap_img, self.bounds = [], [], [], []
        start = 0
        for c in range(n_classes):
            idx = np.flatnonzero(records.label == c)
            # eval_map's order: np.argsort(-scores) of the class's float32 scores in evaluation order
            order = idx[np.argsort(-np.asarray(records.score[idx], dtype=np.float32))]
            state, img = records.state[order], records.image[order]
            tps, fps = np.flatnonzero(state == TP), np.flatnonzero(state == FP)
            nxt = np.searchsorted(tps, fps)  # the tp each fp precedes (K_c: after the last, irrelevant)
            keep = nxt < len(tps)
            gap_tp.append(start + nxt[keep])
            gap_img.append(img[fps[keep]])
            tp_img.append(img[tps])
            self.bounds.append((start, start + len(tps)))
            start += len(tps)
        self.n_tp = start
        none = [np.empty(0, dtype=np.intp)]
        self.tp_img = np.concatenate(none + tp_img).astype(np.intp)  # (K,)
        # fps in score order within a class and classes in order: the tp indices never decrease
        rows = np.concatenate(none + gap_tp).astype(np.intp)
        self.gap_img = np.concatenate(none + gap_img).astype(np.intp)  # (F,)
        self.gap_start = np.flatnonzero(np.diff(rows, prepend=-1))  # first fp of each run
        self.gap_row = rows[self.gap_start]  # the tp that run precedes (distinct, increasing)

    def fp_increments(self, weights: np.ndarray) -> np.ndarray:
        """``(B, K)``: ``fp_k`` of each row of ``weights`` (``(B, N)`` image counts).

        The fps in front of each tp are gathered from ``weights.T`` (one image's weights contiguous) and summed by
        ``np.add.reduceat``, at most about :data:`_GATHER_FLOATS` values at a time. The result is a transposed view of a
        ``(K, B)`` array: numpy sums floats in the order of their memory layout, so keeping this layout fixes the last
        bits of the sums in :meth:`__call__`."""
        n_rows = weights.shape[0]
        out = np.zeros((self.n_tp, n_rows))
        if self.gap_img.size:
            wt = np.ascontiguousarray(weights.T)  # (N, B)
            per_piece = max(1, _GATHER_FLOATS // max(n_rows, 1))  # fps gathered at once
            bounds = np.append(self.gap_start, len(self.gap_img))  # run j: fps bounds[j]..bounds[j+1]
            i, n_runs = 0, len(self.gap_start)
            while i < n_runs:
                a = bounds[i]
                j = min(max(int(np.searchsorted(bounds, a + per_piece, side="right")) - 1, i + 1), n_runs)
                out[self.gap_row[i:j]] = np.add.reduceat(wt[self.gap_img[a:bounds[j]]], bounds[i:j] - a, axis=0)
                i = j
        return out.T

    def __call__(self, weights: np.ndarray) -> np.ndarray:
        """``weights``: ``(B, N)`` image counts; returns the ``(B,)`` mAP of each row."""
        weights = np.asarray(weights, dtype=float)
        g = weights @ self.num_gts  # (B, C)
        tp_inc = weights[:, self.tp_img]  # (B, K)
        fp_inc = self.fp_increments(weights)  # (B, K)
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
    """VOC mAP (area under the monotone precision envelope) of one run, as mmdet's ``eval_map`` computes it, on the
    test images ``images``. ``images``: indices, repeats allowed (an image listed twice counts its detections and its
    gts twice, as a bootstrap resample does); None: every image once.

    Classes with no counted gt among ``images`` are left out of the mean (mmdet). Detections are ordered as
    ``eval_map`` orders the full test set (``np.argsort(-score)`` per class); on a resample, ties in score between
    different detections keep that order.
    """
    n_images = records.num_gts.shape[0]
    w = np.ones(n_images) if images is None else _image_counts(images, n_images)
    return float(_VocMap(records)(w[None])[0])


def bootstrap_map(records_list: Sequence[Records], n_boot: int = 1000, seed: int = 0) -> np.ndarray:
    """mAP of each run on ``n_boot`` bootstrap resamples of the test images, shared by all runs.
    Returns ``(n_boot, R)``: ``out[b, r] = voc_map(records_list[r], resample b)`` for ``R`` runs' records over the same
    test images in the same order (else a ValueError).

    Resample ``b`` is ``np.random.default_rng(seed).integers(0, N, size=(n_boot, N))[b]``: ``N`` test images drawn with
    replacement. Every run is evaluated on the same resamples, so the columns of a paired difference share the test-set
    noise.
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
        # resamples scored at once. The rows scored together can change a row's mAP in its last
        # bit (numpy's float sums follow the arrays' layout, which follows their shape), so this
        # split is part of the result; the gather of fp weights has its own bound (_GATHER_FLOATS).
        chunk = max(1, _CHUNK_FLOATS // (n_images + 4 * voc.n_tp))
        for s in range(0, n_boot, chunk):
            out[s:s + chunk, r] = voc(counts[s:s + chunk])
    return out
