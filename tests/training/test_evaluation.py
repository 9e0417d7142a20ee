"""DetectionRecords against hand-worked outcomes and against mmdet's VOCMetric / eval_map."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lossbench.records import FP, IGNORED, TP, load_records, voc_map
from lossbench.training.evaluation import DetectionRecords

CLASSES = ("a", "b")


def _sample(img_id, gts, ignored, preds):
    """A data sample as VOCMetric receives it: ``gts``/``ignored`` = [(box, label)],
    ``preds`` = [(box, label, score)]; boxes x1, y1, x2, y2 in pixels."""
    def inst(rows, with_score=False):
        boxes = torch.tensor([r[0] for r in rows], dtype=torch.float32).reshape(-1, 4)
        out = dict(bboxes=boxes, labels=torch.tensor([r[1] for r in rows], dtype=torch.int64))
        if with_score:
            out["scores"] = torch.tensor([r[2] for r in rows], dtype=torch.float32)
        return out
    return dict(img_id=img_id, ori_shape=(400, 400), img_shape=(400, 400),
                gt_instances=inst(gts), ignored_instances=inst(ignored), pred_instances=inst(preds, True))


A, A_DUP, D = [0, 0, 10, 10], [0, 0, 10, 11], [50, 50, 60, 60]  # legacy IoU(A, A_DUP) = 121/132 = 0.92
B, E, F = [20, 20, 40, 40], [0, 0, 20, 20], [30, 30, 50, 50]
G, H = [0, 0, 30, 30], [60, 60, 80, 80]
FAR = [[100, 100, 110, 110], [200, 200, 210, 210]]

# (image, score) -> the outcome worked out by hand
HAND = {
    # image 0: gts A (a), B (b); difficult D (a)
    (0, 0.9): TP,       # A, class a
    (0, 0.8): FP,       # A_DUP: A is already taken by the 0.9 -> duplicate
    (0, 0.7): IGNORED,  # D matches the difficult gt: neither tp nor fp
    (0, 0.6): TP,       # B, class b
    (0, 0.95): FP,      # nothing there, class b
    # image 1: gts E, F (a); F is missed
    (1, 0.78): TP,      # E
    (1, 0.75): FP,      # nothing there
    # image 2: gt G (b), difficult H (b)
    (2, 0.5): TP,       # G, class b
    (2, 0.4): IGNORED,  # H
    (2, 0.3): FP,       # G but labelled a: no class-a gt in the image
}


def _hand_samples():
    return [
        _sample(101, [(A, 0), (B, 1)], [(D, 0)],
                [(B, 1, 0.6), (A_DUP, 0, 0.8), (A, 0, 0.9), (FAR[0], 1, 0.95), (D, 0, 0.7)]),
        _sample(102, [(E, 0), (F, 0)], [], [(FAR[1], 0, 0.75), (E, 0, 0.78)]),
        _sample(103, [(G, 1)], [(H, 1)], [(H, 1, 0.4), (G, 0, 0.3), (G, 1, 0.5)]),
    ]


# Class a (3 counted gts: A, E, F), by score: .9 tp, .8 fp, .78 tp, .75 fp, .7 ignored, .3 fp
#   tp points: recall 1/3 at precision 1/1, recall 2/3 at precision 2/3 -> AP = 1/3 + 2/9 = 5/9
# Class b (2 counted gts: B, G), by score: .95 fp, .6 tp, .5 tp, .4 ignored
#   tp points: recall 1/2 at precision 1/2, recall 1 at 2/3; envelope lifts 1/2 to 2/3 -> AP = 2/3
# mAP = (5/9 + 2/3) / 2 = 11/18
HAND_MAP = 11 / 18


def _evaluate(metric, samples):
    metric.dataset_meta = dict(classes=CLASSES)
    metric.process({}, samples)
    return metric.evaluate(len(samples))


def _voc_metric(samples):
    from mmdet.evaluation import VOCMetric

    return _evaluate(VOCMetric(metric="mAP", eval_mode="area", iou_thrs=[0.5]), samples)["pascal_voc/mAP"]


def test_hand_worked_outcomes_map_and_round_trip(tmp_path):
    out = tmp_path / "records.npz"
    metrics = _evaluate(DetectionRecords(out_file=str(out)), _hand_samples())
    rec = load_records(out)
    got = {(int(i), round(float(s), 2)): int(t) for i, s, t in zip(rec.image, rec.score, rec.state)}
    assert got == HAND
    assert rec.image_ids.tolist() == ["101", "102", "103"]
    # counted gts: image 0 one of each class, image 1 two of a, image 2 one of b (difficult ones excluded)
    assert rec.num_gts.tolist() == [[1, 1], [2, 0], [0, 1]]
    assert (rec.image.dtype, rec.label.dtype, rec.score.dtype, rec.state.dtype, rec.num_gts.dtype) == (
        np.int32, np.int16, np.float32, np.int8, np.int32)
    labels = {(int(i), round(float(s), 2)): int(c) for i, s, c in zip(rec.image, rec.score, rec.label)}
    assert labels[(0, 0.95)] == 1 and labels[(2, 0.3)] == 0 and rec.iou_thr == 0.5
    assert metrics["records/mAP"] == pytest.approx(HAND_MAP, abs=1e-12)
    assert voc_map(rec) == pytest.approx(HAND_MAP, abs=1e-12)
    assert _voc_metric(_hand_samples()) == pytest.approx(HAND_MAP, abs=1e-6)


def test_no_file_without_out_file(tmp_path):
    metrics = _evaluate(DetectionRecords(), _hand_samples())
    assert set(metrics) == {"records/mAP"} and not list(tmp_path.iterdir())


def _random_samples(rng, n_images=24, n_classes=3):
    """Images with 0-4 gts (some difficult), jittered detections of them, duplicates and
    background boxes; continuous scores (no ties)."""
    samples = []
    for i in range(n_images):
        n_gt = rng.integers(0, 5)
        xy = rng.uniform(0, 300, size=(n_gt, 2))
        wh = rng.uniform(20, 90, size=(n_gt, 2))
        boxes = np.hstack([xy, xy + wh]).round(1)
        labels = rng.integers(0, n_classes, size=n_gt)
        difficult = rng.random(n_gt) < 0.2
        preds = []
        for box, lab in zip(boxes, labels):
            for _ in range(rng.integers(0, 3)):  # 0 (missed), 1 or 2 (duplicate) detections
                jitter = box + rng.normal(0, 6, size=4)
                c = lab if rng.random() < 0.85 else rng.integers(0, n_classes)
                preds.append((jitter.tolist(), int(c), float(rng.uniform(0.05, 1))))
        for _ in range(rng.integers(0, 4)):
            xy = rng.uniform(0, 350)
            preds.append(([xy, xy, xy + 40, xy + 40], int(rng.integers(0, n_classes)), float(rng.uniform(0.05, 1))))
        order = rng.permutation(len(preds))
        samples.append(_sample(
            i, [(b.tolist(), int(c)) for b, c, d in zip(boxes, labels, difficult) if not d],
            [(b.tolist(), int(c)) for b, c, d in zip(boxes, labels, difficult) if d],
            [preds[j] for j in order]))
    return samples


@pytest.mark.parametrize("tied", [False, True])
def test_matches_voc_metric_and_eval_map_on_a_resample(tmp_path, tied):
    """records/mAP = pascal_voc/mAP on random data, also when many scores tie (mmdet's unstable
    sort decides their order); without ties, voc_map on a resample with repeats equals mmdet's
    eval_map on that resample written out image by image."""
    from mmdet.evaluation.functional import eval_map

    rng = np.random.default_rng(3)
    samples = _random_samples(rng, n_images=40)
    if tied:  # scores on a 0.1 grid: classes of > 16 detections with tied tp and fp
        for s in samples:
            s["pred_instances"]["scores"] = (s["pred_instances"]["scores"] * 10).round() / 10
    out = tmp_path / "r.npz"
    metric = DetectionRecords(out_file=str(out))
    metric.dataset_meta = dict(classes=CLASSES + ("c",))
    metric.process({}, samples)
    records_map = metric.evaluate(len(samples))["records/mAP"]
    from mmdet.evaluation import VOCMetric

    voc = VOCMetric(metric="mAP", eval_mode="area", iou_thrs=[0.5])
    voc.dataset_meta = dict(classes=CLASSES + ("c",))
    voc.process({}, samples)
    gts, dets = zip(*voc.results)
    reference = voc.evaluate(len(samples))["pascal_voc/mAP"]
    assert 0.2 < reference < 0.95  # a non-trivial curve
    assert records_map == pytest.approx(reference, abs=1e-6)

    if tied:
        return
    rec = load_records(out)
    for _ in range(3):
        images = rng.integers(0, len(samples), size=len(samples))
        expected, _ = eval_map([dets[i] for i in images], [gts[i] for i in images], iou_thr=0.5,
                               dataset=list(CLASSES + ("c",)), eval_mode="area", use_legacy_coordinate=True,
                               nproc=1, logger="silent")
        assert voc_map(rec, images) == pytest.approx(expected, abs=1e-6)


def test_the_11_point_key_the_engine_reads_is_the_one_the_voc_config_emits():
    """The VOC profile scores VOC07 test also with the 11-point metric; the engine must read its
    mAP under the key that evaluator emits. The config's evaluators are built and run (on the
    hand-worked samples) as MMEngine would, and the key the engine reads for ``mAP50_11pt`` must
    be the 11-point evaluator's ``<prefix>/mAP``, whatever that prefix is."""
    from pathlib import Path

    from mmdet.evaluation import VOCMetric
    from mmengine import Config

    from lossbench.training.engine import collect_metrics, evaluated_prefixes, optional_metric_keys

    def build(ev: dict) -> VOCMetric:  # as the registry builds it, whatever scope earlier tests left
        assert ev["type"] == "VOCMetric"
        return VOCMetric(**{k: v for k, v in ev.items() if k != "type"})

    repo = Path(__file__).resolve().parents[2]
    cfg = Config.fromfile(str(repo / "configs" / "voc" / "retinanet_r50_fpn_voc0712.py"))
    evs = list(cfg.test_evaluator)
    keys = optional_metric_keys(evs)
    assert set(keys) == {"mAP50_11pt"}
    eleven = [ev for ev in evs if ev["type"] == "VOCMetric" and ev.get("eval_mode") == "11points"]
    assert len(eleven) == 1
    emitted = _evaluate(build(dict(eleven[0])), _hand_samples())  # what this evaluator logs
    maps = [k for k in emitted if k.endswith("/mAP")]
    assert len(maps) == 1 and keys["mAP50_11pt"] == maps[0]
    # beside the area metric (whose keys must not collide with it), the engine keeps its value
    area = [ev for ev in evs if ev["type"] == "VOCMetric" and ev.get("eval_mode", "area") == "area"]
    results = {**_evaluate(build(dict(area[0])), _hand_samples()), **emitted}
    assert len(results) == len(emitted) + 2  # AP50 and mAP of each, no key shared
    metrics, _ = collect_metrics(results, evaluated_prefixes(evs), keys)
    assert metrics["mAP50_11pt"] == round(emitted[maps[0]], 6)
    assert metrics["mAP50"] == pytest.approx(HAND_MAP, abs=1e-6)
    # a profile without the 11-point metric has no such key
    assert optional_metric_keys([dict(type="VOCMetric", metric="mAP", eval_mode="area")]) == {}
    with pytest.raises(ValueError, match="2 evaluators match mAP50_11pt"):
        optional_metric_keys([dict(eleven[0]), dict(eleven[0], prefix="other")])
