"""How many anchors of the common architecture are positive: the imbalance, predicted.

MMDetection's own ``AnchorGenerator`` and ``MaxIoUAssigner``, built from the study's model
config (``bbox_head.anchor_generator``, ``train_cfg.assigner``: pos IoU >= 0.5, neg < 0.4,
every box's best anchors positive), so the numbers are what training sees for images of
this size (no resizing, padded to ``data_preprocessor.pad_size_divisor``).
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

#: the model config whose anchors and assigner define "the common architecture".
DEFAULT_MODEL_CONFIG = "configs/_base_/models/retinanet_imbalance_r50_fpn.py"


def find_model_config(path: str | os.PathLike | None = None) -> Path:
    """Resolve the model config: ``path``, else the default under CWD or the repo."""
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise FileNotFoundError(f"{p}: model config not found")
        return p
    for root in (Path.cwd(), Path(__file__).resolve().parents[3]):
        p = root / DEFAULT_MODEL_CONFIG
        if p.is_file():
            return p
    raise FileNotFoundError(f"{DEFAULT_MODEL_CONFIG}: not found under {Path.cwd()} or the "
                            "lossbench checkout; pass the model config explicitly")


def featmap_sizes(image_size: int, strides: Sequence[int], pad_size_divisor: int = 32) -> list[tuple[int, int]]:
    """(h, w) of each pyramid level for a square image of ``image_size`` px.

    The image is padded to a multiple of ``pad_size_divisor``; each level is
    ``ceil(padded / stride)`` (exact for ResNet + FPN with stride-2 extra convs:
    256 px -> 32, 16, 8, 4, 2 for strides 8..128; 128 px -> 16, 8, 4, 2, 1).
    """
    padded = int(math.ceil(image_size / pad_size_divisor) * pad_size_divisor)
    return [(int(math.ceil(padded / s)), int(math.ceil(padded / s))) for s in strides]


def build_anchor_tools(config: str | os.PathLike | None = None):
    """(anchor generator, assigner, pad_size_divisor) from an MMDetection model config."""
    import mmdet.models.task_modules  # noqa: F401  (registers AnchorGenerator, MaxIoUAssigner)
    from mmdet.registry import TASK_UTILS
    from mmengine.config import Config

    path = find_model_config(config)
    # custom_imports (the study's own modules) are not needed for anchors
    cfg = Config.fromfile(str(path), import_custom_modules=False)
    try:
        ag_cfg = cfg.model.bbox_head.anchor_generator
        as_cfg = cfg.model.train_cfg.assigner
    except AttributeError as e:
        raise KeyError(f"{path}: expected model.bbox_head.anchor_generator and model.train_cfg.assigner ({e})") from e
    pad = int(cfg.model.get("data_preprocessor", {}).get("pad_size_divisor", 1) or 1)
    return TASK_UTILS.build(ag_cfg), TASK_UTILS.build(as_cfg), pad


def anchor_statistics(samples: Sequence[tuple[np.ndarray, np.ndarray]], image_size: int,
                      config: str | os.PathLike | None = None) -> dict[str, Any]:
    """Positive / ignored / negative anchors per image under the study's assigner.

    ``samples``: one ``(boxes (N, 4) [x0, y0, x1, y1] px, labels (N,))`` per square image of ``image_size`` px. Returns
    ``anchors_per_image`` (A); per-image means ``positives_per_image`` etc.; ``positive_share`` etc. = totals / (A x
    images); ``objects_below_pos_iou`` (share of boxes whose best anchor IoU is below the positive threshold, positive
    only through ``min_pos_iou``); ``positives_by_level``.
    """
    import torch
    from mmengine.structures import InstanceData

    gen, assigner, pad = build_anchor_tools(config)
    strides = [int(s[0]) for s in gen.strides]
    sizes = featmap_sizes(image_size, strides, pad)
    levels = gen.grid_priors(sizes, device="cpu")
    level_of = torch.cat([torch.full((len(a),), i) for i, a in enumerate(levels)])  # (A,)
    priors = torch.cat(levels)  # (A, 4)
    A = len(priors)
    pos_thr = float(assigner.pos_iou_thr)
    n_pos = n_ign = n_obj = n_low = 0
    by_level = torch.zeros(len(levels), dtype=torch.long)
    for boxes, labels in samples:
        boxes = torch.as_tensor(np.asarray(boxes, np.float32).reshape(-1, 4))
        n_obj += len(boxes)
        if not len(boxes):
            continue
        gt = InstanceData(bboxes=boxes, labels=torch.as_tensor(np.asarray(labels, np.int64)))
        res = assigner.assign(InstanceData(priors=priors), gt)
        pos = res.gt_inds > 0
        n_pos += int(pos.sum())
        n_ign += int((res.gt_inds < 0).sum())
        by_level += torch.bincount(level_of[pos], minlength=len(levels))
        best = assigner.iou_calculator(boxes, priors).max(1).values  # (N,) best IoU per box
        n_low += int((best < pos_thr).sum())
    n_img = max(len(samples), 1)
    total = A * n_img
    n_neg = total - n_pos - n_ign
    return {
        "image_size": int(image_size), "featmap_sizes": [list(s) for s in sizes], "strides": strides,
        "anchors_per_image": A,
        "assigner": {"pos_iou_thr": pos_thr, "neg_iou_thr": float(assigner.neg_iou_thr)
                     if not isinstance(assigner.neg_iou_thr, tuple) else list(assigner.neg_iou_thr),
                     "min_pos_iou": float(assigner.min_pos_iou)},
        "images": len(samples), "objects": n_obj, "positives_per_image": round(n_pos / n_img, 4),
        "ignored_per_image": round(n_ign / n_img, 4), "negatives_per_image": round(n_neg / n_img, 4),
        "positive_share": round(n_pos / total, 6), "ignored_share": round(n_ign / total, 6),
        "negative_share": round(n_neg / total, 6), "negatives_per_positive": round(n_neg / n_pos, 2) if n_pos else None,
        "positives_per_object": round(n_pos / n_obj, 4) if n_obj else 0.0,
        "objects_below_pos_iou": round(n_low / n_obj, 4) if n_obj else 0.0,
        "positives_by_level": [round(int(v) / n_pos, 4) if n_pos else 0.0 for v in by_level]}
