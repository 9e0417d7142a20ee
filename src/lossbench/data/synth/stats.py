"""Statistics of a generated set (``stats.json``) and the lines that summarise them."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from lossbench.data.classes import SYNTH_CLASSES
from lossbench.data.synth.params import SynthParams
from lossbench.data.synth.render import SPLITS, ImageRecord


def set_statistics(recs: dict[str, list[ImageRecord]], params: SynthParams, seed: int,
                   anchor_config: str | Path | None = None, stats_images: int = 2000) -> dict[str, Any]:
    """What ``stats.json`` holds: seed, params, classes, ``dataset_statistics`` and, with an MMDetection model config
    ``anchor_config``, the positive-anchor statistics of ``lossbench.data.anchor_stats.anchor_statistics`` on up to
    ``stats_images`` images (the first of each split, proportionally)."""
    stats: dict[str, Any] = {"seed": seed, "params": params.as_dict(), "classes": list(SYNTH_CLASSES),
                             "splits": dataset_statistics(recs, params)}
    if anchor_config is not None:
        from lossbench.data.anchor_stats import anchor_statistics

        total = sum(len(v) for v in recs.values())
        take = {s: len(recs[s]) if total <= stats_images else max(1, round(stats_images * len(recs[s]) / total))
                for s in SPLITS}
        stats["anchors"] = anchor_statistics([(r.boxes, r.labels) for s in SPLITS for r in recs[s][:take[s]]],
                                             params.image_size, anchor_config)
    return stats


def dataset_statistics(records_by_split: dict[str, list[ImageRecord]], params: SynthParams) -> dict[str, Any]:
    """Objects per image, object size histogram, classes, occlusion; per split and overall.

    Sizes are ``sqrt(w * h)`` of each box, px, in bins with edges ``[0, 8, 16, 32, 64, 128, 256, 512, inf)``;
    ``coco_area`` counts boxes by COCO's small (< 32^2) / medium (< 96^2) / large ranges of ``w * h``.
    """
    edges = [0, 8, 16, 32, 64, 128, 256, 512, math.inf]
    out: dict[str, Any] = {}
    for split, recs in [*records_by_split.items(), ("all", [r for v in records_by_split.values() for r in v])]:
        n_obj = np.array([len(r.labels) for r in recs], int)
        boxes = np.concatenate([np.zeros((0, 4)), *(r.boxes for r in recs)])  # (N, 4) float
        labels = np.concatenate([np.zeros(0, int), *(r.labels for r in recs)])
        vis = np.concatenate([np.zeros(0), *(r.visible for r in recs)])
        wh = boxes[:, 2:] - boxes[:, :2]
        side, longer, area = np.sqrt(wh.prod(1)), wh.max(1), wh.prod(1)
        hist = np.histogram(side, bins=np.array(edges[:-1] + [1e9]))[0]
        n = max(len(recs), 1)
        out[split] = {
            "images": len(recs), "objects": int(n_obj.sum()),
            "objects_per_image": {
                "mean": round(float(n_obj.mean()) if len(n_obj) else 0.0, 4),
                "min": int(n_obj.min()) if len(n_obj) else 0, "max": int(n_obj.max()) if len(n_obj) else 0,
                "histogram": {str(k): int(v) for k, v in enumerate(np.bincount(n_obj)) if v} if len(n_obj) else {}},
            "distractors_per_image": round(sum(r.n_distractors for r in recs) / n, 4),
            "dropped_objects": int(sum(r.dropped_objects for r in recs)),
            "dropped_distractors": int(sum(r.dropped_distractors for r in recs)),
            "object_size": {
                "measure": "sqrt(w*h) px", "edges": [e if e != math.inf else "inf" for e in edges],
                "counts": [int(v) for v in hist], "longer_side_min": int(longer.min()) if len(longer) else 0,
                "longer_side_max": int(longer.max()) if len(longer) else 0,
                "mean": round(float(side.mean()), 3) if len(side) else 0.0},
            "coco_area": {"small": int((area < 32 ** 2).sum()),
                          "medium": int(((area >= 32 ** 2) & (area < 96 ** 2)).sum()),
                          "large": int((area >= 96 ** 2).sum())},
            "class_counts": {name: int((labels == k).sum()) for k, name in enumerate(SYNTH_CLASSES)},
            "visible_fraction": {
                "mean": round(float(vis.mean()), 4) if len(vis) else 1.0,
                "min": round(float(vis.min()), 4) if len(vis) else 1.0,
                "occluded_share": round(float((vis < 0.95).mean()), 4) if len(vis) else 0.0},
            "box_area_share": round(float(area.sum()) / (n * params.image_size ** 2), 5)}
    return out


def summary_text(stats: dict[str, Any], out: Path, seconds: float) -> str:
    """A few human-readable lines about a set generated into ``out`` in ``seconds``."""
    a = stats["splits"]["all"]
    p = stats["params"]
    lines = [f"wrote {a['images']} images to {out} " + " / ".join(f"{s} {stats['splits'][s]['images']}"
                                                                  for s in SPLITS),
             f"  speed: {a['images'] / max(seconds, 1e-9):.0f} images/s ({seconds:.1f} s)"]
    opi = a["objects_per_image"]
    lines.append(f"  objects/image: mean {opi['mean']:.2f} (min {opi['min']}, max {opi['max']}), distractors/image "
                 f"{a['distractors_per_image']:.2f}, objects dropped for lack of room {a['dropped_objects']}")
    sz = a["object_size"]
    hist = ", ".join(f"[{lo},{hi}): {c}" for lo, hi, c in zip(sz["edges"][:-1], sz["edges"][1:], sz["counts"]) if c)
    lo, hi = p["object_size"]
    lines.append(f"  object size sqrt(wh) px (requested longer side {lo}..{hi}): {hist}")
    lines.append(f"  visible fraction mean {a['visible_fraction']['mean']:.3f}, "
                 f"occluded (<95% visible) {100 * a['visible_fraction']['occluded_share']:.1f}%")
    if "anchors" in stats:
        an = stats["anchors"]
        lines.append(f"  anchors/image {an['anchors_per_image']}, positives/image {an['positives_per_image']:.2f}, "
                     f"positive share {100 * an['positive_share']:.3f}% "
                     f"(ignored {100 * an['ignored_share']:.3f}%, negatives {100 * an['negative_share']:.2f}%)")
    return "\n".join(lines)
