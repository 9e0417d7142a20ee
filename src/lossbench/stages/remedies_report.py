"""Report the later remedies beside the three papers' families (params.yaml: remedies).

Recomputes every family's val-best from its grid runs and stops unless it agrees with SELECTION
(the study's, `lossbench select`) and SELECTION_REMEDIES (`lossbench select --families-key
remedies.families`); reads every family's grid runs and val-best extra seeds and the three
papers' paper-default extra seeds with their test records, bootstraps the test images (1000
replicates, seed 0) and writes OUT/README.md (the seven families' val-bests and paper defaults
side by side, the remedies' primary comparisons of params.yaml: remedies.primary, their papers'
claims, per-setting summaries, loss shares, deviations from each paper), OUT/tables/*.{md,csv,tex},
OUT/figures/*.{png,pdf}, OUT/runs.csv and OUT/provenance.json. OUT is replaced as a whole; a
missing or inconsistent run is an error naming its folder.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from lossbench.stages import report


def add_arguments(parser: argparse.ArgumentParser) -> None:
    report.add_arguments(parser)  # --profile, --params, --runs, --selection (the study's), --out
    parser.add_argument("--selection-remedies", default=None,
                        help="the remedies' selection file (default: RUNS/selection_remedies.json)")


def run(args: argparse.Namespace) -> int:
    from lossbench.profiles import ProfileError, load_params
    from lossbench.report.remedies import build_remedies_report

    t0 = time.perf_counter()
    runs = Path(args.runs)
    try:
        params = load_params(args.params)
        res = build_remedies_report(runs, params, args.profile, args.out,
                                    args.selection or runs / "selection.json",
                                    args.selection_remedies or runs / "selection_remedies.json")
    except (ProfileError, ValueError) as e:  # ReportError is a ValueError
        print(f"lossbench remedies-report: error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {args.out}: {len(res['runs'])} runs, {len(res['comparisons'])} comparisons "
          f"in {time.perf_counter() - t0:.1f} s")
    return 0
