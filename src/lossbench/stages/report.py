"""Build the tables, figures and provenance of a profile from its runs.

Recomputes each family's val-best setting from the grid runs (val mAP50 over the grid seeds)
and stops unless it agrees with SELECTION (lossbench select); reads every run the design asks
for (grid, extra seeds of the paper default and the val-best, prior-off, the 2T calibration
runs) with its test records and the pretrained backbone's record (RUNS/pretrain/metrics.json),
bootstraps the test images (1000 replicates, seed 0) and writes OUT/README.md (pretrained
backbone, T-vs-2T calibration, the primary comparisons of params.yaml: comparisons, paper
orderings, per-setting summaries, exploratory tables), OUT/tables/*.{md,csv,tex},
OUT/figures/*.{png,pdf}, OUT/runs.csv and OUT/provenance.json. OUT is replaced as a whole; it
depends on the runs only, so unchanged runs give byte-identical files. A missing or
inconsistent run is an error naming its folder.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--profile", required=True, help="profile name (for the provenance block)")
    parser.add_argument("--params", default="params.yaml", help="params file with the grids and seeds")
    parser.add_argument("--runs", required=True, help="folder of the profile's runs")
    parser.add_argument("--selection", default=None,
                        help="selection file written by `lossbench select` (default: RUNS/selection.json)")
    parser.add_argument("--out", required=True, help="report folder (replaced)")


def run(args: argparse.Namespace) -> int:
    from lossbench.profiles import ProfileError, load_params
    from lossbench.report.build import build_report

    t0 = time.perf_counter()
    try:
        params = load_params(args.params)
        res = build_report(args.runs, params, args.profile, args.out,
                           args.selection or Path(args.runs) / "selection.json")
    except (ProfileError, ValueError) as e:  # ReportError is a ValueError
        print(f"lossbench report: error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {args.out}: {len(res['runs'])} runs, {len(res['comparisons'])} comparisons "
          f"in {time.perf_counter() - t0:.1f} s")
    return 0
