"""Generate the synthetic detection set (VOC and COCO layouts) and its imbalance statistics.

Writes OUT/VOCdevkit/VOCsynth/{JPEGImages,Annotations,ImageSets/Main},
OUT/annotations/{train,val,test}.json (COCO; file_name relative to OUT) and
OUT/stats.json (objects per image, size histogram, occlusion, and the share of
positive anchors under the common RetinaNet's anchors and MaxIoUAssigner).
The same --seed and options give byte-identical files, whatever --workers.
Classes (category ids 1..8): red_disc, orange_disc, red_ring, blue_square,
blue_diamond, green_triangle, yellow_star, purple_cross.
"""

from __future__ import annotations

import argparse
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder (replaced as a whole)")
    parser.add_argument("--seed", type=int, default=0, metavar="S", help="random seed (default 0)")
    parser.add_argument("--n-train", type=int, default=2000, metavar="N", help="training images (default 2000)")
    parser.add_argument("--n-val", type=int, default=500, metavar="N", help="validation images (default 500)")
    parser.add_argument("--n-test", type=int, default=500, metavar="N", help="test images (default 500)")
    parser.add_argument("--image-size", type=int, default=256, metavar="PX",
                        help="side of the square images, px (default 256)")
    parser.add_argument("--objects", type=int, nargs=2, default=(1, 8), metavar=("MIN", "MAX"),
                        help="labelled objects per image, uniform (default 1 8)")
    parser.add_argument("--object-size", type=int, nargs=2, default=None, metavar=("MIN", "MAX"),
                        help="longer box side of an object, px, log-uniform "
                             "(default image-size/16 .. image-size/2)")
    parser.add_argument("--distractors", type=int, nargs=2, default=(2, 8), metavar=("MIN", "MAX"),
                        help="unlabelled hard-negative shapes per image (default 2 8)")
    parser.add_argument("--distractor-size", type=int, nargs=2, default=None, metavar=("MIN", "MAX"),
                        help="longer side of a distractor, px (default: --object-size)")
    parser.add_argument("--clutter", type=float, default=24.0, metavar="K",
                        help="background strokes per 256x256 px (default 24)")
    parser.add_argument("--max-occlusion", type=float, default=0.5, metavar="F",
                        help="largest share of an object's pixels later shapes may hide (default 0.5)")
    parser.add_argument("--jpeg-quality", type=int, default=90, metavar="Q", help="JPEG quality (default 90)")
    parser.add_argument("--workers", type=int, default=0, metavar="N",
                        help="processes (default 0 = one per CPU; the output does not depend on it)")
    parser.add_argument("--anchor-config", default=None, metavar="PY",
                        help="MMDetection model config whose anchors / assigner define the positive-anchor "
                             "statistics (default configs/_base_/models/retinanet_imbalance_r50_fpn.py); "
                             "'none' skips them")
    parser.add_argument("--stats-images", type=int, default=2000, metavar="N",
                        help="images used for the anchor statistics (default 2000)")


def run(args: argparse.Namespace) -> int:
    from lossbench.data import synth

    keys = set(synth.RUN_KEYS) | set(synth.SynthParams.__dataclass_fields__)
    data = {k: v for k, v in vars(args).items() if k in keys}  # the options, named as in a profile's data
    try:
        synth.generate(args.out, **synth.generate_kwargs(data, "options"))
    except (ValueError, FileExistsError, FileNotFoundError) as e:
        print(f"lossbench synth: error: {e}", file=sys.stderr)
        return 2
    return 0
