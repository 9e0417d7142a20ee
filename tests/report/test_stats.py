import math

import numpy as np
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


# --- VOC mAP from detection records, its image bootstrap, and the combined interval ---------------

def _records(num_gts, image, label, score, state, image_ids=None):
    from lossbench.evaluation import Records

    num_gts = np.asarray(num_gts, dtype=np.int32)
    ids = np.arange(len(num_gts)).astype(str) if image_ids is None else np.asarray(image_ids, dtype=str)
    return Records(image=np.asarray(image, np.int32), label=np.asarray(label, np.int16),
                   score=np.asarray(score, np.float32), state=np.asarray(state, np.int8),
                   num_gts=num_gts, image_ids=ids, iou_thr=0.5)


def _random_records(rng, n_images=40, n_classes=3):
    """Per image and class: 0-3 gts, at most that many tps, 0-3 fps, sometimes an ignored
    detection; continuous scores (no ties)."""
    num_gts = rng.integers(0, 4, size=(n_images, n_classes))
    image, label, state = [], [], []
    for i in range(n_images):
        for c in range(n_classes):
            n_tp, n_fp = rng.integers(0, num_gts[i, c] + 1), rng.integers(0, 4)
            n_ig = int(rng.random() < 0.2)
            image += [i] * (n_tp + n_fp + n_ig)
            label += [c] * (n_tp + n_fp + n_ig)
            state += [1] * n_tp + [0] * n_fp + [-1] * n_ig
    return _records(num_gts, image, label, rng.random(len(image)), state)


def _naive_map(rec, images):
    """mmdet's eval_map on the images written out one by one: per class, sort by score, cumulate
    tp and fp, precision envelope from the right, area where recall steps."""
    aps = []
    for c in range(rec.num_gts.shape[1]):
        n_gts = sum(rec.num_gts[i, c] for i in images)
        if n_gts == 0:
            continue
        det = [(s, t) for i in images for s, t, lab, im in zip(rec.score, rec.state, rec.label, rec.image)
               if im == i and lab == c]
        det.sort(key=lambda d: -d[0])
        tp = np.cumsum([t == 1 for _, t in det])
        fp = np.cumsum([t == 0 for _, t in det])
        mrec = np.concatenate([[0], tp / n_gts, [1]])
        mpre = np.concatenate([[0], tp / np.maximum(tp + fp, 1e-9), [0]])
        for k in range(len(mpre) - 1, 0, -1):
            mpre[k - 1] = max(mpre[k - 1], mpre[k])
        step = np.flatnonzero(mrec[1:] != mrec[:-1])
        aps.append(np.sum((mrec[step + 1] - mrec[step]) * mpre[step + 1]))
    return float(np.mean(aps)) if aps else 0.0


def test_voc_map_against_a_naive_reference_and_under_repeats():
    from lossbench.report.stats import voc_map

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
    from lossbench.report.stats import voc_map

    # class 0, 2 gts: scores .9 tp, .8 ignored, .7 fp, .6 tp -> points (r 1/2, p 1), (r 1, p 2/3)
    # AP = 1/2 * 1 + 1/2 * 2/3 = 5/6. Class 1 has no gt (its fp is left out of the mean).
    rec = _records([[1, 0], [1, 0]], image=[0, 0, 1, 1, 1], label=[0, 0, 0, 0, 1],
                   score=[0.9, 0.8, 0.7, 0.6, 0.95], state=[1, -1, 0, 1, 0])
    assert voc_map(rec) == pytest.approx(5 / 6, abs=1e-12)
    # image 1 alone: .7 fp, .6 tp -> AP = 1 * 1/2
    assert voc_map(rec, [1]) == pytest.approx(0.5, abs=1e-12)
    # image 0 twice: .9 tp (x2) -> recall 1 at precision 1
    assert voc_map(rec, [0, 0]) == pytest.approx(1.0, abs=1e-12)


def test_bootstrap_of_identical_images_has_no_variance():
    from lossbench.report.stats import bootstrap_map, voc_map

    n = 30  # every image: gts 2 (class 0), 1 (class 1); dets .9 tp, .8 fp, .7 tp (class 0), .6 fp (class 1)
    rec = _records([[2, 1]] * n, image=np.repeat(np.arange(n), 4), label=[0, 0, 0, 1] * n,
                   score=[0.9, 0.8, 0.7, 0.6] * n, state=[1, 0, 1, 0] * n)
    boot = bootstrap_map([rec], n_boot=200, seed=1)
    assert boot.shape == (200, 1)
    # class 0: (r 1/2, p 1), (r 1, p 2/3) -> 5/6; class 1: 0 -> mAP 5/12 on every resample
    assert voc_map(rec) == pytest.approx(5 / 12, abs=1e-12)
    assert np.abs(boot - 5 / 12).max() < 1e-12


def test_bootstrap_replicates_by_hand_and_binomial_variance():
    """One gt and one detection per image, every tp scored above every fp: the curve is flat at
    precision 1 up to recall k/n, so a resample's mAP is the share of tp images drawn, whose
    variance is q(1 - q)/n."""
    from lossbench.report.stats import bootstrap_map

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
    from lossbench.report.stats import bootstrap_map, voc_map

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
