"""Turn a fetched or generated set into COCO-format train/val/test splits.

With --profile NAME, --dataset and profiles.NAME.prepare (subset, seed,
strict, val_holdout) come from --params (default params.yaml); explicit flags win.

Three disjoint splits: settings are chosen on val, results reported on test.

  synth     train/val/test = ROOT/annotations/{train,val,test}.json (from `lossbench synth`)
  voc2007   train = VOC2007 train; val = VOC2007 val; test = VOC2007 test
  voc0712   train = VOC2007 train + VOC2012 trainval; val = VOC2007 val;
            test = VOC2007 test
  coco2017  train = train2017 less the val hold-out; val = the hold-out: the
            --val-holdout N (default 5000) train2017 images with the smallest
            md5("coco-val-holdout:" + file_name), file_name as in
            instances_train2017.json; test = val2017

Before anything is written, no image may be in two splits, by file_name or by
content (md5 of the file's bytes): an overlap is an error naming both splits.

Writes OUT/{train,val,test}.json (COCO, checked with pycocotools; file_name
relative to --root), OUT/summary.json (counts, clipped boxes, the hold-out's
rule) and, for coco2017, OUT/val_holdout.txt; --subset applies to each split
after the splits are formed. VOC difficult objects are kept as ignored. Bad
annotations are errors naming the file; boxes partly outside their image are
clipped and counted (--strict: error). Contract: lossbench/data/prepare.py.
"""

from __future__ import annotations

import argparse
import sys

from lossbench.data.prepare import DATASETS, prepare


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset", default=None, choices=DATASETS,
                        help="which set ROOT holds (or take it from --profile)")
    parser.add_argument("--root", required=True, metavar="DIR",
                        help="the fetch --root (VOC, COCO) or the synth --out folder")
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder (replaced as a whole)")
    parser.add_argument("--profile", default=None, metavar="NAME",
                        help="take --dataset and profiles.NAME.prepare (subset, seed, strict, val_holdout) "
                             "from --params")
    parser.add_argument("--params", default="params.yaml", metavar="FILE", help="params file (default params.yaml)")
    parser.add_argument("--subset", type=int, default=None, metavar="N",
                        help="keep N images per split (deterministic, nested); default all")
    parser.add_argument("--seed", type=int, default=None, metavar="S", help="seed of the subset choice (default 0)")
    parser.add_argument("--strict", action="store_true", default=None,
                        help="boxes partly outside their image are an error instead of being clipped")
    parser.add_argument("--val-holdout", type=int, default=None, metavar="N",
                        help="coco2017: train2017 images held out as the val split (default 5000)")
    parser.add_argument("--no-check-images", action="store_true",
                        help="do not open each image to compare its size with the annotation")


#: keys a profile's ``prepare`` mapping may set (explicit flags win).
PREPARE_KEYS = ("subset", "seed", "strict", "val_holdout")


def run(args: argparse.Namespace) -> int:
    try:
        dataset = args.dataset
        opts = {"subset": None, "seed": 0, "strict": False, "val_holdout": None}
        if args.profile:
            from lossbench.profiles import resolve_dataset

            prof, where = resolve_dataset(args.params, args.profile, dataset, flag="--dataset")
            dataset = prof.dataset
            unknown = set(prof.prepare) - set(PREPARE_KEYS)
            if unknown:
                raise ValueError(f"{where}.prepare: unknown keys {sorted(unknown)}; allowed {list(PREPARE_KEYS)}")
            opts.update({k: v for k, v in prof.prepare.items() if v is not None})
        opts.update({k: getattr(args, k) for k in PREPARE_KEYS if getattr(args, k) is not None})
        if dataset is None:
            raise ValueError("give --dataset or --profile")
        prepare(dataset, args.root, args.out, subset=opts["subset"], seed=int(opts["seed"]),
                strict=bool(opts["strict"]), check_images=not args.no_check_images, val_holdout=opts["val_holdout"])
    except (KeyError, ValueError, OSError) as e:  # PrepareError is a ValueError
        print(f"lossbench prepare: error: {e}", file=sys.stderr)
        return 2
    return 0
