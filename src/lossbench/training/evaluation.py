"""The test metric that keeps per-detection records (:class:`lossbench.records.Records`), from
which VOC mAP@0.5 can be recomputed on any resample of the test images
(:func:`lossbench.records.voc_map`, ``bootstrap_map``; reading them needs no MMDetection).

:class:`DetectionRecords` classifies every detection exactly as MMDetection 3.3's
``VOCMetric(metric='mAP', eval_mode='area')`` does (``tpfp_default``, legacy ``+1`` box coordinates,
difficult / crowd gts ignored) and keeps, per detection, its image, class, score and outcome; per
image, the number of counted gts of each class. A config adds it beside ``VOCMetric``::

    test_evaluator = [dict(type='VOCMetric', metric='mAP', eval_mode='area', iou_thrs=[0.5]),
                      dict(type='DetectionRecords', out_file='.../records.npz')]

so that ``records/mAP`` (recomputed from the records) is logged beside ``pascal_voc/mAP``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from mmdet.evaluation.functional.mean_ap import tpfp_default
from mmdet.registry import METRICS
from mmengine.evaluator import BaseMetric

from lossbench.records import FP, IGNORED, TP, Records, save_records, voc_map


@METRICS.register_module()
class DetectionRecords(BaseMetric):
    """Keep per-detection :class:`Records` of the test evaluation and report the mAP they give.

    ``out_file``: where :meth:`compute_metrics` writes the records (``.npz``; None keeps none); ``iou_thr``: IoU
    threshold of a match (VOC: 0.5); ``prefix``: the result is logged as ``<prefix>/mAP``; ``collect_device``: 'cpu' or
    'gpu', how ranks gather their results.
    """

    default_prefix: str | None = "records"

    def __init__(self, out_file: str | None = None, iou_thr: float = 0.5, prefix: str | None = "records",
                 collect_device: str = "cpu") -> None:
        super().__init__(collect_device=collect_device, prefix=prefix)
        self.out_file = out_file
        self.iou_thr = float(iou_thr)

    def process(self, data_batch: Any, data_samples: Sequence[dict]) -> None:
        """Classify each image's detections as ``VOCMetric`` + ``eval_map`` do. Per class ``c``, the
        detections labelled ``c`` (model order) are matched by ``tpfp_default`` against the gts and the
        ignored gts of class ``c``, with ``use_legacy_coordinate=True`` and no area ranges."""
        n_classes = len(self.dataset_meta["classes"])
        for sample in data_samples:
            if "img_id" not in sample:
                raise KeyError("DetectionRecords needs 'img_id' in each data sample (PackDetInputs meta_keys)")
            gt, ignored, pred = sample["gt_instances"], sample["ignored_instances"], sample["pred_instances"]
            gt_bboxes, gt_labels = gt["bboxes"].cpu().numpy(), gt["labels"].cpu().numpy()
            ig_bboxes, ig_labels = ignored["bboxes"].cpu().numpy(), ignored["labels"].cpu().numpy()
            bboxes, scores, labels = (pred[k].cpu().numpy() for k in ("bboxes", "scores", "labels"))
            out_labels, out_scores, out_states = [], [], []
            for c in range(n_classes):
                index = np.where(labels == c)[0]
                dets = np.hstack([bboxes[index], scores[index].reshape((-1, 1))])  # (m, 5), as VOCMetric
                tp, fp = tpfp_default(dets, gt_bboxes[gt_labels == c], ig_bboxes[ig_labels == c],
                                      self.iou_thr, None, True)  # each (1, m)
                out_labels.append(np.full(len(index), c, dtype=np.int16))
                out_scores.append(scores[index].astype(np.float32))
                out_states.append(np.where(tp[0] > 0, TP, np.where(fp[0] > 0, FP, IGNORED)).astype(np.int8))
            self.results.append(dict(
                img_id=str(sample["img_id"]), label=np.concatenate(out_labels), score=np.concatenate(out_scores),
                state=np.concatenate(out_states),
                num_gts=np.bincount(gt_labels.astype(np.int64), minlength=n_classes).astype(np.int32)))

    def compute_metrics(self, results: list) -> dict[str, float]:
        """Assemble the images' records in evaluation order, write them to ``out_file`` when set,
        and return ``{'mAP': voc_map(records)}``."""
        records = Records(
            image=np.repeat(np.arange(len(results), dtype=np.int32), [len(r["label"]) for r in results]),
            label=np.concatenate([r["label"] for r in results]).astype(np.int16),
            score=np.concatenate([r["score"] for r in results]).astype(np.float32),
            state=np.concatenate([r["state"] for r in results]).astype(np.int8),
            num_gts=np.stack([r["num_gts"] for r in results]).astype(np.int32),
            image_ids=np.array([r["img_id"] for r in results], dtype=str), iou_thr=self.iou_thr)
        if self.out_file:
            save_records(records, self.out_file)
        return {"mAP": voc_map(records)}
