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

PAIR = ("MIN", "MAX")
#: flag, type, metavar and help of each option (its default: a profile's ``data`` default, see ``run``)
OPTIONS = (
    ("--seed", int, "S", "random seed (default 0)"),
    ("--n-train", int, "N", "training images (default 2000)"),
    ("--n-val", int, "N", "validation images (default 500)"),
    ("--n-test", int, "N", "test images (default 500)"),
    ("--image-size", int, "PX", "side of the square images, px (default 256)"),
    ("--objects", int, PAIR, "labelled objects per image, uniform (default 1 8)"),
    ("--object-size", int, PAIR, "longer box side of an object, px, log-uniform "
                                 "(default image-size/16 .. image-size/2)"),
    ("--distractors", int, PAIR, "unlabelled hard-negative shapes per image (default 2 8)"),
    ("--distractor-size", int, PAIR, "longer side of a distractor, px (default: --object-size)"),
    ("--clutter", float, "K", "background strokes per 256x256 px (default 24)"),
    ("--max-occlusion", float, "F", "largest share of an object's pixels later shapes may hide (default 0.5)"),
    ("--jpeg-quality", int, "Q", "JPEG quality (default 90)"),
    ("--workers", int, "N", "processes (default 0 = one per CPU; the output does not depend on it)"),
    ("--anchor-config", str, "PY", "MMDetection model config whose anchors / assigner define the positive-anchor "
                                   "statistics (default configs/_base_/models/retinanet_imbalance_r50_fpn.py); "
                                   "'none' skips them"),
    ("--stats-images", int, "N", "images used for the anchor statistics (default 2000)"))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder (replaced as a whole)")
    for flag, kind, metavar, help_text in OPTIONS:
        parser.add_argument(flag, type=kind, metavar=metavar, nargs=2 if metavar == PAIR else None, help=help_text)


def run(args: argparse.Namespace) -> int:
    from lossbench.data import synth

    keys = set(synth.RUN_KEYS) | set(synth.SynthParams.__dataclass_fields__)
    # the options given, named as in a profile's data; generate_kwargs fills in the defaults
    data = {k: v for k, v in vars(args).items() if k in keys and v is not None}
    try:
        synth.generate(args.out, **synth.generate_kwargs(data, "options"))
    except (ValueError, FileExistsError, FileNotFoundError) as e:
        print(f"lossbench synth: error: {e}", file=sys.stderr)
        return 2
    return 0
