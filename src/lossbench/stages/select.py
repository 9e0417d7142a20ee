"""Choose each family's setting on the val split: the grid setting with the highest mean val mAP50.

Reads RUNS/<family>/<setting>/seed<k>/metrics.json for every grid setting and every seed of
`seeds` in the params file (the extra seeds are left out; ties go to the paper default, then to
grid order) and writes OUT atomically: per family its best, default, best_on_grid_edge and
grid_edge_note; with --val-means, the mean of every setting apart from them, so a moved mean that
changes no choice retrains nothing. The test split is never read. A missing run, or one without
val mAP50, is an error naming its folder.
"""

from __future__ import annotations

import argparse
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--runs", required=True, help="folder of the profile's runs")
    parser.add_argument("--params", default="params.yaml", help="params file with the grids and seeds")
    parser.add_argument("--out", required=True, help="selection file to write: the choices (JSON)")
    parser.add_argument("--val-means", help="file to write the val mean of every setting to (JSON)")
    parser.add_argument("--families-key", metavar="KEY", default="families",
                        help="the params key listing the families to choose for (dotted, e.g. remedies.families; "
                             "default: families)")


def run(args: argparse.Namespace) -> int:
    from lossbench.profiles import ProfileError, load_params
    from lossbench.report.select import select, write_selection

    try:
        params = load_params(args.params)
        if args.families_key != "families":
            node = params
            for part in args.families_key.split("."):
                if not isinstance(node, dict) or part not in node:
                    raise ProfileError(f"{args.params}: missing key {args.families_key}")
                node = node[part]
            params = {**params, "families": node}
        sel = select(args.runs, params)
    except (ProfileError, ValueError) as e:
        print(f"lossbench select: error: {e}", file=sys.stderr)
        return 2
    write_selection(sel, args.out, args.val_means)
    for fam, c in sel["families"].items():
        edge = f" (grid edge: {c['grid_edge_note']})" if c["best_on_grid_edge"] else ""
        print(f"{fam}: {c['best']}{edge}")
    print(f"wrote {args.out}" + (f" and {args.val_means}" if args.val_means else ""))
    return 0
