"""Choose each family's setting on the val split only; the test split never chooses.

The val-best setting of a family is the grid setting with the highest mean val mAP50 over the grid seeds (``seeds`` of
params.yaml, which every setting has; the extra seeds of the paper default and the val-best are left out, so every
setting is compared on the same seeds). Means are exact sums (``math.fsum``), so a tie is a true tie; ties go to the
paper default first, then to the earlier setting in grid order.

A grid edge: the best is the lowest or highest value of the swept knob on its line of the grid (focal: the γ values
sharing the most common α, i.e. γ 0 or 5 at α 0.25), or a setting off that line (focal's γ 0, α 0.75 row). A best on the
edge means the grid may not bracket the optimum.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path
from typing import Any

import pandas as pd

from lossbench.families import FAMILIES, KNOBS, knob_value, setting_key, setting_label, slug
from lossbench.report.collect import ReportError, grid_runs, grids, paper_defaults, seeds
from lossbench.utils import atomic_write_json, read_json

METRIC = "val mAP50"


def grid_edge(family: str, grid: list[dict[str, Any]], best: dict[str, Any]) -> str | None:
    """Why ``best`` is on the edge of ``grid``, or None when it is inside.
    The line is the settings that share the other knobs' most common values (ties: the first in grid order); the edge
    is its lowest and highest swept value (``all`` = +inf)."""
    knob = FAMILIES[family].swept
    others = [tuple(kv for kv in setting_key(family, s) if kv[0] != knob) for s in grid]
    line_key = Counter(others).most_common(1)[0][0]
    line = [knob_value(family, s) for s, o in zip(grid, others) if o == line_key]
    best_other = tuple(kv for kv in setting_key(family, best) if kv[0] != knob)
    name = setting_label(family, best)
    if best_other != line_key:
        fixed = ", ".join(f"{KNOBS[k].symbol} = {v:g}" if isinstance(v, float) else f"{KNOBS[k].symbol} = {v}"
                          for k, v in line_key)
        return f"{name} is a separate row off the grid's line ({fixed}), with no neighbour on that line"
    if len(line) < 3:
        return f"{name}: the grid's line has {len(line)} value(s), every one an edge"
    v = knob_value(family, best)
    if v == min(line):
        return f"{name} is the lowest {KNOBS[knob].symbol} of the grid"
    if v == max(line):
        return f"{name} is the highest {KNOBS[knob].symbol} of the grid"
    return None


def select_from(df: pd.DataFrame, params: dict[str, Any]) -> dict[str, Any]:
    """The selection from the grid runs ``df`` (:func:`lossbench.report.collect.grid_runs`)."""
    grid_seeds = seeds(params)
    defaults = paper_defaults(params)
    out: dict[str, Any] = {"metric": METRIC, "seeds": grid_seeds, "families": {}}
    for fam, grid in grids(params).items():
        means = {}
        for i, s in enumerate(grid):
            g = df[(df.family == fam) & (df.order == i) & df.seed.isin(grid_seeds)]
            means[slug(fam, s)] = math.fsum(g["val_mAP50"]) / len(g)
        dkey = setting_key(fam, defaults[fam])
        # highest mean; then the paper default; then grid order
        ranked = sorted(range(len(grid)), key=lambda i: (-means[slug(fam, grid[i])],
                                                         setting_key(fam, grid[i]) != dkey, i))
        best = grid[ranked[0]]
        note = grid_edge(fam, grid, best)
        out["families"][fam] = {"best": best, "default": defaults[fam],
                                "best_on_grid_edge": note is not None, "grid_edge_note": note, "val_means": means}
    return out


def select(runs: str | Path, params: dict[str, Any]) -> dict[str, Any]:
    """``{"metric", "seeds", "families": {f: {"best", "default", "best_on_grid_edge",
    "grid_edge_note", "val_means": {slug: mean}}}}`` from the grid runs under ``runs``
    (a missing run, or one without val mAP50, is an error naming its folder)."""
    return select_from(grid_runs(runs, params), params)


def choices(selection: dict[str, Any]) -> dict[str, Any]:
    """The selection without the val means behind it: what the runs trained from a selection
    (``--choose best``) read, so that a moved mean with an unchanged choice retrains nothing."""
    return {**selection, "families": {f: {k: v for k, v in c.items() if k != "val_means"}
                                      for f, c in selection["families"].items()}}


def write_selection(selection: dict[str, Any], path: str | Path, val_means: str | Path | None = None) -> Path:
    """Write the choices (:func:`choices`) to ``path`` and, when given, the val means of every
    setting to ``val_means`` (``{"metric", "seeds", "families": {f: {slug: mean}}}``), atomically."""
    if val_means is not None:
        atomic_write_json(val_means, {"metric": selection["metric"], "seeds": selection["seeds"],
                                      "families": {f: c["val_means"] for f, c in selection["families"].items()}})
    return atomic_write_json(path, choices(selection))


def check_selection(selection: dict[str, Any], path: str | Path) -> None:
    """Raise unless the selection file at ``path`` chose the same best settings and seeds
    (the val means are not compared: they are recomputed from the same runs)."""
    path = Path(path)
    if not path.is_file():
        raise ReportError(f"selection file {path} does not exist (run `lossbench select` first)")
    saved = read_json(path)
    if saved.get("seeds") != selection["seeds"]:
        raise ReportError(f"{path}: seeds {saved.get('seeds')} but the runs and params give {selection['seeds']}")
    for fam in selection["families"]:
        got = ((saved.get("families") or {}).get(fam) or {}).get("best")
        want = selection["families"][fam]["best"]
        if not isinstance(got, dict) or setting_key(fam, got) != setting_key(fam, want):
            raise ReportError(
                f"{path}: families.{fam}.best is {json.dumps(got)}, but the runs select {json.dumps(want)} (mean val "
                f"mAP50 over seeds {selection['seeds']}); rerun `lossbench select` and the runs that depend on it")
