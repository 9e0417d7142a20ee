"""Report the imbalance sweep: test mAP50 of each family's paper default and val-best per point, and the family x
share interaction.

Reads, for every profile of `sweep.profiles` in the params file, the runs
RUNS/<profile>/<choose>/<family>/seed<k>/ of `sweep.runs` and `sweep.seeds` with their test
records (checked against the paper default and SELECTION's val-best; duplicates merged after
checking they agree) and DATA/<profile>/raw/stats.json (canvas, objects per image, anchors per
image, measured share of positive anchors). Writes OUT/README.md, OUT/tables/sweep*.{md,csv,tex}
(per point, the comparisons at each point, the interaction F-tests and slopes, the training
conditions), OUT/figures/sweep_mAP50_vs_positive_share.{png,pdf} and OUT/provenance.json; OUT is
replaced as a whole. A missing or inconsistent run is an error naming its folder.
"""

from __future__ import annotations

import argparse
import sys
import time


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--runs", required=True, help="folder of the sweep's runs (runs/sweep)")
    parser.add_argument("--data", required=True, help="folder holding <profile>/raw/stats.json (data)")
    parser.add_argument("--params", default="params.yaml", help="params file with the `sweep` section")
    parser.add_argument("--selection", required=True,
                        help="selection file of the main grid (runs/synth/selection.json)")
    parser.add_argument("--out", required=True, help="report folder (replaced)")


def run(args: argparse.Namespace) -> int:
    from lossbench.profiles import ProfileError, load_params
    from lossbench.report.sweep import build_sweep_report

    t0 = time.perf_counter()
    try:
        res = build_sweep_report(args.runs, args.data, load_params(args.params), args.selection, args.out)
    except (ProfileError, ValueError) as e:
        print(f"lossbench sweep-report: error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {args.out}: {len(res['runs'])} runs in {time.perf_counter() - t0:.1f} s")
    return 0
