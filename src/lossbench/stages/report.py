"""Build the ablation tables, figures and provenance of a profile from its runs.

Reads RUNS/<family>/<setting>/seed<k>/metrics.json for every run the grids of
the params file ask for (a missing run is reported as missing) and writes
OUT/README.md, OUT/tables/*.{md,csv,tex}, OUT/figures/*.{png,pdf},
OUT/runs.csv and OUT/provenance.json. OUT is replaced as a whole; it depends on
the runs only, so unchanged runs give byte-identical files.
"""

from __future__ import annotations

import argparse
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--profile", required=True, help="profile name (for the provenance block)")
    parser.add_argument("--params", default="params.yaml", help="params file with the grids")
    parser.add_argument("--runs", required=True, help="folder of the profile's runs")
    parser.add_argument("--out", required=True, help="report folder (replaced)")


def run(args: argparse.Namespace) -> int:
    from lossbench.profiles import ProfileError, load_params
    from lossbench.report.build import build_report

    try:
        params = load_params(args.params)
    except ProfileError as e:
        print(f"lossbench report: error: {e}", file=sys.stderr)
        return 2
    res = build_report(args.runs, params, args.profile, args.out)
    s = res["summary"]
    print(f"wrote {args.out}: {int(s['n'].sum())} of {int(s['n_expected'].sum())} runs")
    return 0
