"""Test records (lossbench.records): save / load, VOC mAP from records, its bootstrap over test
images, against hand-worked values and an independent reference; numpy and the standard library only."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from lossbench import records
from lossbench.records import (
    FP,
    IGNORED,
    RECORD_KEYS,
    TP,
    Records,
    bootstrap_map,
    load_records,
    save_records,
    voc_map,
)

RECORDS_PY = Path(records.__file__)


def _records(num_gts, image, label, score, state, image_ids=None):
    num_gts = np.asarray(num_gts, dtype=np.int32)
    ids = np.arange(len(num_gts)).astype(str) if image_ids is None else np.asarray(image_ids, dtype=str)
    return Records(image=np.asarray(image, np.int32), label=np.asarray(label, np.int16),
                   score=np.asarray(score, np.float32), state=np.asarray(state, np.int8),
                   num_gts=num_gts, image_ids=ids, iou_thr=0.5)


def _random_records(rng, n_images=40, n_classes=3, max_fp=4):
    """Per image and class: 0-3 gts, at most that many tps, 0 to ``max_fp - 1`` fps, sometimes an
    ignored detection; continuous scores (no ties)."""
    num_gts = rng.integers(0, 4, size=(n_images, n_classes))
    image, label, state = [], [], []
    for i in range(n_images):
        for c in range(n_classes):
            n_tp, n_fp = rng.integers(0, num_gts[i, c] + 1), rng.integers(0, max_fp)
            n_ig = int(rng.random() < 0.2)
            image += [i] * (n_tp + n_fp + n_ig)
            label += [c] * (n_tp + n_fp + n_ig)
            state += [TP] * n_tp + [FP] * n_fp + [IGNORED] * n_ig
    return _records(num_gts, image, label, rng.random(len(image)), state)


def _naive_map(rec, images):
    """mmdet's eval_map (area mode) on the images written out one by one: per class, sort by
    score, cumulate tp and fp, precision envelope from the right, area where recall steps."""
    aps = []
    for c in range(rec.num_gts.shape[1]):
        n_gts = sum(rec.num_gts[i, c] for i in images)
        if n_gts == 0:
            continue
        det = [(s, t) for i in images for s, t, lab, im in zip(rec.score, rec.state, rec.label, rec.image)
               if im == i and lab == c]
        det.sort(key=lambda d: -d[0])
        tp = np.cumsum([t == TP for _, t in det])
        fp = np.cumsum([t == FP for _, t in det])
        mrec = np.concatenate([[0], tp / n_gts, [1]])
        mpre = np.concatenate([[0], tp / np.maximum(tp + fp, 1e-9), [0]])
        for k in range(len(mpre) - 1, 0, -1):
            mpre[k - 1] = max(mpre[k - 1], mpre[k])
        step = np.flatnonzero(mrec[1:] != mrec[:-1])
        aps.append(np.sum((mrec[step + 1] - mrec[step]) * mpre[step + 1]))
    return float(np.mean(aps)) if aps else 0.0


# --- the module's own imports ----------------------------------------------------------------------

def test_records_imports_only_numpy_and_the_standard_library():
    """Every import statement of records.py (top level or not) names numpy or a standard module."""
    tree = ast.parse(RECORDS_PY.read_text(encoding="utf-8"))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"records.py: relative import from {node.module!r}"
            names.add(node.module)
    assert names, "records.py: no import found (the scan is broken)"
    allowed = set(sys.stdlib_module_names) | {"numpy"}
    outside = sorted(n for n in names if n.split(".")[0] not in allowed)
    assert not outside, f"records.py imports {outside}: only numpy and the standard library are allowed"


def test_importing_records_loads_no_heavy_package():
    """In a fresh interpreter, importing lossbench.records pulls in none of scipy, torch, pandas,
    mmdet, mmcv or mmengine (the AST check above, seen from sys.modules)."""
    heavy = ("scipy", "torch", "pandas", "mmdet", "mmcv", "mmengine")
    code = ("import sys, lossbench.records\n"
            f"print(sorted({{m.split('.')[0] for m in sys.modules}} & set({heavy!r})))")
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    assert out.stdout.strip() == "[]"


# --- Records, save and load ------------------------------------------------------------------------

def test_save_load_round_trip_keeps_values_and_dtypes(tmp_path):
    rec = _random_records(np.random.default_rng(5), n_images=7)
    path = save_records(rec, tmp_path / "sub" / "r.npz")
    assert path == tmp_path / "sub" / "r.npz" and sorted(p.name for p in path.parent.iterdir()) == ["r.npz"]
    back = load_records(path)
    for k in RECORD_KEYS:
        a, b = np.asarray(getattr(rec, k)), np.asarray(getattr(back, k))
        assert a.dtype == b.dtype and np.array_equal(a, b), k
    with np.load(path, allow_pickle=False) as z:  # no pickles: loads without allow_pickle
        assert sorted(z.files) == sorted(RECORD_KEYS)


def test_a_failed_save_leaves_the_old_file(tmp_path, monkeypatch):
    rec = _random_records(np.random.default_rng(6), n_images=5)
    path = save_records(rec, tmp_path / "r.npz")
    before = path.read_bytes()

    def broken(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez_compressed", broken)
    with pytest.raises(OSError, match="disk full"):
        save_records(rec, path)
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["r.npz"]


def test_load_records_names_the_file_and_the_missing_key(tmp_path):
    out = save_records(_random_records(np.random.default_rng(1), n_images=5), tmp_path / "records.npz")
    with np.load(out) as z:
        arrays = {k: z[k] for k in z.files if k != "state"}
    broken = tmp_path / "broken.npz"
    np.savez_compressed(broken, **arrays)
    with pytest.raises(KeyError, match=r"broken\.npz.*'state'"):
        load_records(broken)


def test_records_reject_inconsistent_arrays():
    with pytest.raises(ValueError, match="one length"):
        _records([[1]], image=[0, 0], label=[0], score=[0.5, 0.4], state=[TP, FP])
    with pytest.raises(ValueError, match=r"num_gts must be \(N, C\)"):
        _records([[1], [1]], image=[0], label=[0], score=[0.5], state=[TP], image_ids=["a"])
    with pytest.raises(ValueError, match=r"image indices must lie in \[0, 2\) and labels in \[0, 1\)"):
        _records([[1], [1]], image=[2], label=[0], score=[0.5], state=[TP])
    with pytest.raises(ValueError, match=r"labels in \[0, 1\)"):
        _records([[1], [1]], image=[0], label=[1], score=[0.5], state=[TP])


# --- VOC mAP from records -------------------------------------------------------------------------

def test_voc_map_against_a_naive_reference_and_under_repeats():
    rng = np.random.default_rng(0)
    rec = _random_records(rng)
    n = rec.num_gts.shape[0]
    full = voc_map(rec)
    assert 0.1 < full < 0.9
    assert full == pytest.approx(_naive_map(rec, range(n)), abs=1e-12)
    assert voc_map(rec, np.arange(n)) == full  # each image once = all
    assert voc_map(rec, rng.permutation(n)) == pytest.approx(full, abs=1e-12)
    # every image twice: tp, fp and gt counts all double, precision and recall are unchanged
    assert voc_map(rec, np.repeat(np.arange(n), 2)) == pytest.approx(full, abs=1e-12)
    for _ in range(5):
        images = rng.integers(0, n, size=n)
        assert voc_map(rec, images) == pytest.approx(_naive_map(rec, images), abs=1e-12)


def test_voc_map_hand_worked_with_an_ignored_detection_and_a_class_without_gts():
    # class 0, 2 gts: scores .9 tp, .8 ignored, .7 fp, .6 tp -> points (r 1/2, p 1), (r 1, p 2/3)
    # AP = 1/2 * 1 + 1/2 * 2/3 = 5/6. Class 1 has no gt (its fp is left out of the mean).
    rec = _records([[1, 0], [1, 0]], image=[0, 0, 1, 1, 1], label=[0, 0, 0, 0, 1],
                   score=[0.9, 0.8, 0.7, 0.6, 0.95], state=[TP, IGNORED, FP, TP, FP])
    assert voc_map(rec) == pytest.approx(5 / 6, abs=1e-12)
    # image 1 alone: .7 fp, .6 tp -> AP = 1 * 1/2
    assert voc_map(rec, [1]) == pytest.approx(0.5, abs=1e-12)
    # image 0 twice: .9 tp (x2) -> recall 1 at precision 1
    assert voc_map(rec, [0, 0]) == pytest.approx(1.0, abs=1e-12)
    with pytest.raises(ValueError, match=r"image indices must lie in \[0, 2\), got 0\.\.2"):
        voc_map(rec, [0, 2])


def test_voc_map_hand_worked_with_runs_of_false_positives_under_repeats():
    """Several fps in front of one tp, from different images, and fps after the last tp.

    Class 0, images 0-2, one gt each. By score: .95 fp (img 1), .9 fp (img 2), .85 fp (img 1),
    .8 tp (img 0), .7 fp (img 0), .6 tp (img 2), .5 fp (img 2) and .4 tp (img 1).
    """
    rec = _records([[1], [1], [1]], image=[1, 2, 1, 0, 0, 2, 2, 1], label=[0] * 8,
                   score=[0.95, 0.9, 0.85, 0.8, 0.7, 0.6, 0.5, 0.4],
                   state=[FP, FP, FP, TP, FP, TP, FP, TP])
    # all once: tps at ranks 4, 6, 8 -> precision 1/4, 2/6, 3/8; envelope 3/8, 3/8, 3/8 -> AP 3/8
    assert voc_map(rec) == pytest.approx(3 / 8, abs=1e-12)
    # images 0, 0, 2: by score .9 fp (2), .8 tp x2 (0), .7 fp x2 (0), .6 tp (2), .5 fp (2); 3 gts
    # tp points: TP 2 at FP 1 -> 2/3, TP 3 at FP 3 -> 3/6; AP = 2/3 * 2/3 + 1/3 * 1/2 = 11/18
    assert voc_map(rec, [0, 0, 2]) == pytest.approx(11 / 18, abs=1e-12)
    # image 1 alone: .95 fp, .85 fp, .4 tp -> AP 1/3
    assert voc_map(rec, [1]) == pytest.approx(1 / 3, abs=1e-12)
    for images in ([0, 0, 2], [1], [2, 2, 1, 0], [0, 1, 1, 1]):
        assert voc_map(rec, images) == pytest.approx(_naive_map(rec, images), abs=1e-12)


def test_voc_map_without_detections_or_gts():
    assert voc_map(_records([[0, 0]], image=[], label=[], score=[], state=[])) == 0.0
    assert voc_map(_records([[2, 0]], image=[], label=[], score=[], state=[])) == 0.0
    assert voc_map(_records([[0, 0]], image=[0], label=[1], score=[0.5], state=[FP])) == 0.0


# --- the image bootstrap --------------------------------------------------------------------------

def test_bootstrap_of_identical_images_has_no_variance():
    n = 30  # every image: gts 2 (class 0), 1 (class 1); dets .9 tp, .8 fp, .7 tp (class 0), .6 fp (class 1)
    rec = _records([[2, 1]] * n, image=np.repeat(np.arange(n), 4), label=[0, 0, 0, 1] * n,
                   score=[0.9, 0.8, 0.7, 0.6] * n, state=[TP, FP, TP, FP] * n)
    boot = bootstrap_map([rec], n_boot=200, seed=1)
    assert boot.shape == (200, 1)
    # class 0: (r 1/2, p 1), (r 1, p 2/3) -> 5/6; class 1: 0 -> mAP 5/12 on every resample
    assert voc_map(rec) == pytest.approx(5 / 12, abs=1e-12)
    assert np.abs(boot - 5 / 12).max() < 1e-12


def test_bootstrap_replicates_by_hand_and_binomial_variance():
    """One gt and one detection per image, every tp scored above every fp: the curve is flat at
    precision 1 up to recall k/n, so a resample's mAP is the share of tp images drawn, whose
    variance is q(1 - q)/n."""
    n, n_tp, n_boot = 50, 30, 4000
    is_tp = np.arange(n) < n_tp
    rec = _records(np.ones((n, 1)), image=np.arange(n), label=np.zeros(n),
                   score=np.where(is_tp, 0.5, 0.0) + np.linspace(0.4, 0.1, n), state=is_tp.astype(int))
    boot = bootstrap_map([rec], n_boot=n_boot, seed=7)
    draws = np.random.default_rng(7).integers(0, n, size=(n_boot, n))  # the documented resamples
    np.testing.assert_allclose(boot[:, 0], is_tp[draws].mean(axis=1), atol=1e-12)
    q = n_tp / n  # var = .6 * .4 / 50 = .0048
    assert boot[:, 0].var(ddof=1) == pytest.approx(q * (1 - q) / n, rel=0.1)


def test_bootstrap_shares_the_resamples_between_runs_and_checks_image_ids():
    rng = np.random.default_rng(2)
    runs = [_random_records(rng) for _ in range(2)]
    runs[1] = _records(runs[0].num_gts, runs[1].image, runs[1].label, runs[1].score, runs[1].state)
    boot = bootstrap_map(runs, n_boot=50, seed=3)
    draws = np.random.default_rng(3).integers(0, 40, size=(50, 40))
    for b in (0, 17, 49):
        for r in range(2):
            assert boot[b, r] == pytest.approx(voc_map(runs[r], draws[b]), abs=1e-12)
    other = _records(runs[1].num_gts, runs[1].image, runs[1].label, runs[1].score, runs[1].state,
                     image_ids=[*runs[0].image_ids[:5], "x", *runs[0].image_ids[6:]])
    with pytest.raises(ValueError, match=r"runs 0 and 1 differ in test image 5: id '5' vs 'x'"):
        bootstrap_map([runs[0], other])
    fewer = _records(runs[1].num_gts[:39], [0], [0], [0.5], [FP])
    with pytest.raises(ValueError, match="run 1 has 39 test images, run 0 has 40"):
        bootstrap_map([runs[0], fewer])
    gts = runs[0].num_gts.copy()
    gts[3, 1] += 1
    with pytest.raises(ValueError, match="same image ids but different gt counts"):
        bootstrap_map([runs[0], _records(gts, [0], [0], [0.5], [FP])])
    assert bootstrap_map([], n_boot=4).shape == (4, 0)


@pytest.mark.parametrize("gather", [1, 7, 1000, 10**9])
def test_bootstrap_equals_the_naive_reference_on_every_resample(monkeypatch, gather):
    """Long runs of fps (up to 11 per image and class), a class without any tp, several runs:
    every replicate equals mmdet's area AP computed on the resample written out, whatever the
    size of the pieces in which the fp weights are gathered (one value at a time up to all)."""
    monkeypatch.setattr(records, "_GATHER_FLOATS", gather)
    rng = np.random.default_rng(11)
    runs = [_random_records(rng, n_images=25, n_classes=4, max_fp=12) for _ in range(2)]
    num_gts = runs[0].num_gts.copy()
    num_gts[:, 3] = 1  # class 3: gts everywhere, fps only (AP 0)
    runs = [_records(num_gts, r.image, r.label, r.score, np.where(r.label == 3, FP, r.state)) for r in runs]
    n_boot = 40
    boot = bootstrap_map(runs, n_boot=n_boot, seed=5)
    draws = np.random.default_rng(5).integers(0, 25, size=(n_boot, 25))
    expected = np.array([[_naive_map(r, d) for r in runs] for d in draws])
    assert 0.01 < expected.min() and expected.max() < 0.9 and expected.std() > 0.005  # non-trivial
    np.testing.assert_allclose(boot, expected, rtol=0, atol=1e-12)


def test_fp_increments_are_exact_sums_in_any_piece_size(monkeypatch):
    """The fp weight in front of each tp, per resample, equals a plain loop over the detections
    (integer sums, exact) bit for bit, for every size of the gathered pieces."""
    rng = np.random.default_rng(8)
    rec = _random_records(rng, n_images=30, n_classes=3, max_fp=9)
    weights = rng.integers(0, 4, size=(6, 30)).astype(float)
    # reference: walk each class's detections in score order
    expected = []
    for c in range(3):
        idx = np.flatnonzero(rec.label == c)
        order = idx[np.argsort(-rec.score[idx])]
        pending = np.zeros(len(weights))
        for j in order:
            if rec.state[j] == FP:
                pending += weights[:, rec.image[j]]
            elif rec.state[j] == TP:
                expected.append(pending)
                pending = np.zeros(len(weights))
    expected = np.stack(expected, axis=1)
    voc = records._VocMap(rec)
    for gather in (1, 2, 5, 6, 13, 10**9):
        monkeypatch.setattr(records, "_GATHER_FLOATS", gather)
        assert np.array_equal(voc.fp_increments(weights), expected), gather
