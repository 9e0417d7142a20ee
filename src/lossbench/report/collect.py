"""Collect the runs' metrics into one table, with every expected run present.

The expected runs come from the grids of ``params.yaml`` (family x knob value x
seed); a run whose ``metrics.json`` is absent is kept as a row with status
``missing``, so no table can silently average over fewer seeds.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd

from lossbench.models.imbalance import SWEPT_KNOB
from lossbench.naming import run_name
from lossbench.utils import read_json

METRICS = ("mAP50", "AP", "AP50", "AP75", "APs", "APm", "APl")
FAMILY_ORDER = ("focal", "ohem", "sse")
FAMILY_LABEL = {"focal": "RetinaNet focal loss", "ohem": "SSD hard negative mining",
                "sse": "YOLO v1 sum-squared error"}
KNOB_LABEL = {"focal": "γ (α)", "ohem": "neg:pos", "sse": "λ_noobj"}


def knob_label(family: str, value: Any, alpha: float | None = None) -> str:
    """How a knob value is printed: ``2 (.25)``, ``3``, ``all``, ``0.5``."""
    if value is None or value == "all":
        return "all"
    s = f"{float(value):g}"
    if family == "focal" and alpha is not None:
        s += f" ({float(alpha):g})"
    return s


def expected_runs(params: dict[str, Any]) -> list[dict[str, Any]]:
    """Every (family, setting, seed) the grids of ``params`` ask for, in grid order."""
    grids = {
        "focal": [dict(s) for s in params.get("focal", {}).get("settings", [])],
        "ohem": [{"neg_pos_ratio": r} for r in params.get("ohem", {}).get("neg_pos_ratio", [])],
        "sse": [{"lambda_noobj": v} for v in params.get("sse", {}).get("lambda_noobj", [])],
    }
    return [{"family": family, "setting": setting, "order": order, "seed": seed} for family in FAMILY_ORDER
            for order, setting in enumerate(grids[family]) for seed in params.get("seeds") or []]


def _value(family: str, setting: dict[str, Any]) -> float:
    """Numeric knob for plotting; 'all' negatives -> +inf."""
    v = setting[SWEPT_KNOB[family]]
    return math.inf if v in (None, "all") else float(v)


def collect(runs: str | Path, params: dict[str, Any]) -> pd.DataFrame:
    """One row per expected run: name, family, knob, seed, status, metrics, finals, timing.

    ``run_dir`` is ``runs / run`` (:func:`lossbench.naming.run_name`), where dvc.yaml puts it.
    """
    runs = Path(runs)
    rows = []
    for exp in expected_runs(params):
        fam, setting, seed = exp["family"], exp["setting"], exp["seed"]
        name = run_name(fam, setting, seed)
        d = runs / name
        row: dict[str, Any] = {
            "run": name, "family": fam, "order": exp["order"], "seed": seed,
            "knob": SWEPT_KNOB[fam], "value": _value(fam, setting),
            "label": knob_label(fam, setting[SWEPT_KNOB[fam]], setting.get("alpha")),
            "alpha": setting.get("alpha"), "run_dir": str(d),
        }
        mfile = d / "metrics.json"
        if mfile.is_file():
            rec = read_json(mfile)
            row["status"] = "ok"
            row.update({m: rec["metrics"].get(m) for m in METRICS})  # None: not applicable
            row["no_detections"] = rec.get("no_detections", False)
            row.update({f"final_{k}": v for k, v in rec.get("final", {}).items()})
            row.update(rec.get("timing", {}))
            row["iters"] = rec.get("iters")
        else:
            row["status"] = "missing"
        rows.append(row)
    df = pd.DataFrame(rows)
    for m in METRICS:
        df[m] = pd.to_numeric(df[m], errors="coerce") if m in df else float("nan")
    return df
