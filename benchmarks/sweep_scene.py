"""What the sweep's canvas changes besides the positive share: occlusion, room and proximity.

For every point of ``params.yaml: sweep.profiles`` it renders the first N training images of the
point's data (the generator of ``lossbench fetch``, in memory, nothing written) and prints, per
point: labelled objects and distractors per image, objects dropped for lack of room, the mean
visible share of the labelled objects' pixels, the share occluded (< 95 % visible), and how near
the objects lie to each other: per object, the largest IoU of its box with another object's box
(mean, and the shares above 0 and above 0.1). ``--max-occlusion`` overrides the points' value,
e.g. 0.5 (the synth profile's) to see the scene of the earlier design.

    python benchmarks/sweep_scene.py [--images 400] [--max-occlusion F] [--params params.yaml]
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import numpy as np
from mmdet.evaluation.functional import bbox_overlaps

from lossbench.data.synth import generate_kwargs
from lossbench.data.synth.render import iter_images
from lossbench.profiles import load_params, load_profile

ROOT = Path(__file__).resolve().parents[1]


def box_max_iou(boxes: np.ndarray) -> np.ndarray:
    """(N,) per box of ``boxes`` (N, 4) ``[x0, y0, x1, y1]``, its largest IoU with another box (0 alone)."""
    if len(boxes) < 2:
        return np.zeros(len(boxes))
    iou = bbox_overlaps(boxes.astype(np.float32), boxes.astype(np.float32))  # MMDetection's, end-exclusive boxes
    np.fill_diagonal(iou, 0.0)
    return iou.max(1)


def scene(data: dict, images: int, max_occlusion: float | None) -> dict[str, float]:
    """The scene statistics of the first ``images`` training images of a profile's ``data``."""
    kw = generate_kwargs({**data, "anchor_config": "none"})
    params = kw["params"] if max_occlusion is None else dataclasses.replace(kw["params"], max_occlusion=max_occlusion)
    recs = list(iter_images(params.resolved(), kw["seed"], [("train", i) for i in range(1, images + 1)], 1))
    vis = np.concatenate([r.visible for r in recs])
    near = np.concatenate([box_max_iou(r.boxes) for r in recs])
    return {"canvas": params.image_size, "max_occlusion": params.max_occlusion,
            "objects": float(np.mean([len(r.labels) for r in recs])),
            "dropped": int(sum(r.dropped_objects for r in recs)),
            "distractors": float(np.mean([r.n_distractors for r in recs])),
            "visible": float(vis.mean()), "occluded": float((vis < 0.95).mean()),
            "iou_mean": float(near.mean()), "iou_gt0": float((near > 0).mean()), "iou_gt01": float((near > 0.1).mean())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=400, help="training images per point (default 400)")
    ap.add_argument("--max-occlusion", type=float, default=None, help="override the points' max_occlusion")
    ap.add_argument("--params", default=str(ROOT / "params.yaml"))
    args = ap.parse_args()
    print(f"| point | canvas | max_occlusion | objects / image (dropped of {args.images} images) | distractors / image "
          "| visible (%) | occluded < 95 % (%) | box max-IoU mean | > 0 (%) | > 0.1 (%) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name in load_params(args.params)["sweep"]["profiles"]:
        s = scene(load_profile(args.params, name).data, args.images, args.max_occlusion)
        print(f"| {name} | {s['canvas']} | {s['max_occlusion']:g} | {s['objects']:.3f} ({s['dropped']}) | "
              f"{s['distractors']:.2f} | {100 * s['visible']:.1f} | {100 * s['occluded']:.1f} | {s['iou_mean']:.3f} | "
              f"{100 * s['iou_gt0']:.1f} | {100 * s['iou_gt01']:.1f} |")


if __name__ == "__main__":
    main()
