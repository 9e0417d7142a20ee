"""Download and verify PASCAL VOC 2007 / 2012 or COCO 2017 (md5, resumable, atomic).

DATASET is voc2007, voc2012, coco2017 or voc0712 (both VOC years); with
--profile NAME it comes from profiles.NAME.dataset of --params, and a synth
profile generates the synthetic set into ROOT instead (profiles.NAME.data holds
the `lossbench synth` options: seed, n_train, image_size, objects, ...). Archives are
downloaded to ROOT/downloads (resuming ROOT/downloads/NAME.part), md5-checked,
extracted atomically to ROOT/VOCdevkit/VOC2007, ROOT/VOCdevkit/VOC2012 or
ROOT/coco/{train2017,val2017,annotations}, then deleted (--keep-archives keeps
them). ROOT/.lossbench-fetch-DATASET.json marks a verified dataset; fetching it
again does no network work. --mirror URL (or LOSSBENCH_MIRROR) replaces the
official base address and keeps the relative paths below.

Official files:
  voc2007   https://thor.robots.ox.ac.uk/pascal/VOC/voc2007/VOCtrainval_06-Nov-2007.tar  c52e279531787c972589f7e41ab4ae64
  voc2007   https://thor.robots.ox.ac.uk/pascal/VOC/voc2007/VOCtest_06-Nov-2007.tar      b6e924de25625d8de591ea690078ad9f
  voc2012   https://thor.robots.ox.ac.uk/pascal/VOC/voc2012/VOCtrainval_11-May-2012.tar  6cd6e144f989b92b3379bac3b3de84fd
  coco2017  http://images.cocodataset.org/zips/train2017.zip                             cced6f7f71b7629ddf16f17bbcfab6b2
  coco2017  http://images.cocodataset.org/zips/val2017.zip                               442b8da7639aecaf257c1dceb8ba8c80
  coco2017  http://images.cocodataset.org/annotations/annotations_trainval2017.zip       f4bbac642086de4f52a3fdda2de5fa2c
(older VOC mirror: http://host.robots.ox.ac.uk/pascal/VOC/ , e.g. --mirror http://host.robots.ox.ac.uk/pascal/VOC
for the VOC years.)
"""

from __future__ import annotations

import argparse
import sys

from lossbench.data.fetch import NAMES, FetchError, fetch


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dataset", nargs="?", choices=NAMES, metavar="DATASET",
                        help=f"one of: {', '.join(NAMES)} (or take it from --profile)")
    parser.add_argument("--root", required=True, metavar="DIR", help="data root (e.g. data/)")
    parser.add_argument("--mirror", default=None, metavar="URL",
                        help="base address replacing the official one (default: $LOSSBENCH_MIRROR, else official)")
    parser.add_argument("--profile", default=None, metavar="NAME",
                        help="take the dataset and its options from profiles.NAME of --params; "
                             "a synth profile generates the set into --root (see `lossbench synth`)")
    parser.add_argument("--params", default="params.yaml", metavar="FILE", help="params file (default params.yaml)")
    parser.add_argument("--retries", type=int, default=5, metavar="N",
                        help="retries after failed attempts in a row before giving up (default 5)")
    parser.add_argument("--backoff", type=float, default=2.0, metavar="S",
                        help="first wait between attempts, s; doubles each time (default 2)")
    parser.add_argument("--timeout", type=float, default=60.0, metavar="S", help="connect/read time-out, s (default 60)")
    parser.add_argument("--keep-archives", action="store_true", help="keep the archives after extraction")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


#: keys a real-data profile's ``data`` mapping may set (they override the flags).
FETCH_KEYS = ("mirror", "retries", "backoff", "timeout", "keep_archives")


def run(args: argparse.Namespace) -> int:
    opts = {k: getattr(args, k) for k in FETCH_KEYS}
    dataset = args.dataset
    try:
        if args.profile:
            from lossbench.profiles import resolve_dataset

            prof, where = resolve_dataset(args.params, args.profile, dataset, flag="DATASET")
            dataset = prof.dataset
            if dataset == "synth":
                from lossbench.data import synth

                synth.generate(args.root, **synth.generate_kwargs(prof.data, f"{where}.data"))
                return 0
            unknown = set(prof.data) - set(FETCH_KEYS)
            if unknown:
                raise ValueError(f"{where}.data: unknown keys {sorted(unknown)}; allowed {list(FETCH_KEYS)}")
            opts.update(prof.data)
        if dataset is None:
            raise ValueError("give DATASET or --profile")
        fetch(dataset, args.root, progress=not args.no_progress and sys.stderr.isatty(), **opts)
    except (FetchError, ValueError, OSError) as e:  # one line naming the file, no traceback
        print(f"lossbench fetch: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("lossbench fetch: interrupted; run the same command again to resume", file=sys.stderr)
        return 130
    return 0
