"""Collect the runs of a profile: every run the study design asks for, read and checked.

Layout under ``runs/<profile>/`` (folder names from :func:`lossbench.families.run_name`)::

    pretrain/metrics.json                           the backbone every run loads (or ``{"pretrain": null, ...}``)
    <family>/<slug>/seed<k>/                        grid: every setting of params.yaml, seeds ``seeds``
    extra/{default,best}/<family>/seed<k>/          the paper default and the val-best, ``extra_seeds``
    prior_off/<family>/seed<k>/                     the paper default, prior-probability init off, ``seeds``
    calibration/{default,best}/<family>/seed<k>/    the paper default and the val-best on a schedule of 2T,
                                                    ``calibration.seeds`` (role ``calibration_default|best``)

T is the schedule every run but the calibration runs trained (their ``iters``: the profile config's max_iters); the
calibration runs and ``calibration.iters`` must be 2T. A missing run, or one whose ``metrics.json`` contradicts its
folder (family, seed, role, setting, prior init, iterations), is an error naming the folder: no table averages over
fewer seeds than the design asks for. When the val-best setting is the paper default, ``best`` and ``default`` train
the same (family, setting, seed): one of each pair is kept, after checking that the two agree.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lossbench.families import FAMILY_ORDER, default_of, grid_of, knob_value, run_name, setting_key, setting_label, slug
from lossbench.utils import read_json

METRICS = ("mAP50", "AP", "AP50", "AP75", "APs", "APm", "APl")
ROLES = ("default", "best")
#: two duplicate runs (extra/default and extra/best of one setting and seed) must agree to this
DUPLICATE_TOLERANCE = 1e-9
#: a run's test mAP50 from its records must match metrics.json to this (the train stage checks the records against
#: VOCMetric to 1e-6, metrics.json rounds to 6 decimals)
RECORDS_TOLERANCE = 2e-6


class ReportError(ValueError):
    """Runs, params or a selection file that do not match the study design; names the file."""


def _params(params: Mapping[str, Any], *keys: str) -> Any:
    node: Any = params
    for i, k in enumerate(keys):
        if not isinstance(node, Mapping) or k not in node:
            raise ReportError(f"params: missing key {'.'.join(keys[:i + 1])}")
        node = node[k]
    return node


def study_families(params: Mapping[str, Any]) -> list[str]:
    """The families a study compares, in the family table's order: ``params['families']``, else
    every family of the table that has a section in ``params``."""
    if "families" not in params:
        return [f for f in FAMILY_ORDER if f in params]
    listed = params["families"]
    if not isinstance(listed, list) or not listed or any(f not in FAMILY_ORDER for f in listed):
        raise ReportError(f"params: families must be a non-empty list of {list(FAMILY_ORDER)}, got {listed!r}")
    return [f for f in FAMILY_ORDER if f in listed]


def families_of(frame: pd.DataFrame) -> list[str]:
    """The families present in a table of runs, in the family table's order."""
    present = set(frame["family"])
    return [f for f in FAMILY_ORDER if f in present]


def grids(params: Mapping[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """family -> its settings in grid order, spelled as ``params`` writes them (:func:`study_families`)."""
    try:
        return {f: grid_of(f, _params(params, f)) for f in study_families(params)}
    except KeyError as e:
        raise ReportError(e.args[0]) from None


def paper_defaults(params: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """family -> its paper default setting (``<family>.default``), which must be on the grid."""
    try:
        out = {f: default_of(f, _params(params, f)) for f in study_families(params)}
    except (KeyError, ValueError) as e:
        raise ReportError(e.args[0]) from None
    for fam, grid in grids(params).items():
        if setting_key(fam, out[fam]) not in {setting_key(fam, s) for s in grid}:
            raise ReportError(f"params: {fam}.default = {out[fam]} is not one of the grid's settings")
    return out


def seeds(params: Mapping[str, Any], key: str = "seeds") -> list[int]:
    """``params[key]`` as a list of ints (``seeds``: every grid setting; ``extra_seeds``)."""
    value = _params(params, key)
    if not isinstance(value, list) or not all(isinstance(s, int) for s in value):
        raise ReportError(f"params: {key} must be a list of integer seeds, got {value!r}")
    return value


def calibration(params: Mapping[str, Any]) -> tuple[int, list[int]]:
    """``(iters, seeds)`` of ``params['calibration']``: the 2T schedule and the seeds it trains."""
    iters, cal_seeds = _params(params, "calibration", "iters"), _params(params, "calibration", "seeds")
    if not isinstance(iters, int) or iters <= 0:
        raise ReportError(f"params: calibration.iters must be a positive integer, got {iters!r}")
    if not isinstance(cal_seeds, list) or not cal_seeds or not all(isinstance(s, int) for s in cal_seeds):
        raise ReportError(f"params: calibration.seeds must be a non-empty list of integer seeds, got {cal_seeds!r}")
    return iters, cal_seeds


def read_pretrain(runs: str | Path) -> dict[str, Any]:
    """``runs/pretrain/metrics.json``: the pretrained backbone's recipe, accuracy and cost, or ``{"pretrain": null,
    "backbone_init_cfg": ...}`` for a profile that loads its config's weights."""
    path = Path(runs) / "pretrain" / "metrics.json"
    if not path.is_file():
        raise ReportError(f"missing {path} (the pretrain stage writes it for every profile)")
    rec = read_json(path)
    if "pretrain" in rec and rec["pretrain"] is None:
        return rec
    for key in ("spec", "held_out", "seconds", "checkpoint", "backbone_parameters"):
        if key not in rec:
            raise ReportError(f"{path}: no '{key}'")
    return rec


def grid_setting(params: Mapping[str, Any], family: str, setting: Mapping[str, Any]) -> tuple[int, dict]:
    """``(grid index, params spelling)`` of ``setting``; an error when it is not on the grid."""
    key = setting_key(family, setting)
    for i, s in enumerate(grids(params)[family]):
        if setting_key(family, s) == key:
            return i, s
    raise ReportError(f"{family} setting {dict(setting)!r} is not on the grid of params")


def _number(x: Any) -> float:
    return float(x) if isinstance(x, int | float) and not isinstance(x, bool) else math.nan


def read_run(d: Path, family: str, seed: int, role: str, setting: Mapping[str, Any] | None,
             prior: bool) -> dict[str, Any]:
    """One run's fields, checked against what its folder says it is.
    ``setting`` None: read it from the file (the extra runs' folders do not name it)."""
    mfile = d / "metrics.json"
    if not mfile.is_file():
        raise ReportError(f"missing run: {d} has no metrics.json")
    rec = read_json(mfile)

    def bad(what: str) -> ReportError:
        return ReportError(f"{mfile}: {what}")

    for field, want in (("family", family), ("seed", seed), ("role", role)):
        if rec.get(field) != want:
            raise bad(f"{field} is {rec.get(field)!r}, the folder says {want!r}")
    got = rec.get("setting")
    if not isinstance(got, Mapping):
        raise bad("no 'setting' mapping")
    if setting is not None and setting_key(family, got) != setting_key(family, setting):
        raise bad(f"setting is {dict(got)}, the folder says {dict(setting)}")
    if (rec.get("prior_prob") is not None) != prior:
        raise bad(f"prior_prob is {rec.get('prior_prob')!r}; expected "
                  + ("a probability (prior init on)" if prior else "null (prior init off)"))
    metrics = rec.get("metrics") or {}
    val, test = metrics.get("val") or {}, metrics.get("test") or {}
    if math.isnan(_number(val.get("mAP50"))):
        raise bad("no val mAP50 (metrics.val.mAP50)")
    clip = rec.get("clip") or {}
    row: dict[str, Any] = {
        "family": family, "seed": seed, "role": role, "prior": prior, "setting": dict(got),
        "run_dir": str(d), "records": str(d / rec["records"]) if rec.get("records") else None,
        "val_curve": [(int(p["iter"]), float(p["mAP50"])) for p in rec.get("val_curve") or []],
        "clip_max_norm": _number(clip.get("max_norm")), "clip_fraction": _number(clip.get("clipped_fraction")),
        "iters": rec.get("iters"), "batch_size": rec.get("batch_size"),
        "test_no_detections": bool(nodet.get("test") if isinstance(nodet := rec.get("no_detections"), Mapping)
                                   else nodet),
        "obj_target": (rec.get("imbalance") or {}).get("obj_target")}
    row.update({f"val_{m}": _number(val.get(m)) for m in METRICS})
    row.update({f"test_{m}": _number(test.get(m)) for m in METRICS})
    row.update({f"final_{k}": v for k, v in (rec.get("final") or {}).items() if isinstance(v, int | float)})
    row.update({k: v for k, v in (rec.get("timing") or {}).items() if isinstance(v, int | float)})
    return row


def _frame(rows: list[dict[str, Any]], root: Path, params: Mapping[str, Any]) -> pd.DataFrame:
    """Rows in the report's order, with the setting's grid index, slug, label and condition."""
    for r in rows:
        r["order"], spelled = grid_setting(params, r["family"], r["setting"])
        r["setting"] = spelled
        r["slug"], r["label"] = slug(r["family"], spelled), setting_label(r["family"], spelled)
        r["knob_value"] = knob_value(r["family"], spelled)
        r["calibration"] = r["role"].startswith("calibration_")
        r["condition"] = (f"{r['family']}/{r['slug']}" + ("" if r["prior"] else "/prior_off")
                          + ("/2T" if r["calibration"] else ""))
        r["run"] = Path(r["run_dir"]).relative_to(root).as_posix()
    df = pd.DataFrame(rows)
    df["_f"] = df["family"].map(FAMILY_ORDER.index)
    return (df.sort_values(["calibration", "_f", "order", "prior", "seed"], ascending=[True, True, True, False, True],
                           kind="stable").drop(columns="_f").reset_index(drop=True))


def grid_runs(runs: str | Path, params: Mapping[str, Any]) -> pd.DataFrame:
    """Every grid run (family x setting x ``seeds``), one row each; an error for a missing one."""
    root = Path(runs)
    rows = [read_run(root / run_name(fam, s, seed), fam, seed, "grid", s, prior=True)
            for fam, grid in grids(params).items() for s in grid for seed in seeds(params)]
    return _frame(rows, root, params)


def keep_once(kept: dict[tuple, dict[str, Any]], key: tuple, row: dict[str, Any], d: Path, fam: str,
              seed: int) -> dict[str, Any] | None:
    """Keep ``row`` under ``key``, or return the run kept there already after checking that the two
    agree (the val-best is the paper default: both roles train the same setting and seed)."""
    other = kept.setdefault(key, row)
    if other is row:
        return None
    if not abs(other["test_mAP50"] - row["test_mAP50"]) <= DUPLICATE_TOLERANCE:
        raise ReportError(f"{other['run_dir']} and {d} train the same {fam} setting and seed {seed} "
                          f"but disagree: test mAP50 {other['test_mAP50']!r} vs {row['test_mAP50']!r}")
    return other


def _paired_runs(root: Path, params: Mapping[str, Any], best: Mapping[str, Mapping[str, Any]], folder: str,
                 role_prefix: str, run_seeds: list[int],
                 default_families: Collection[str] | None = None) -> list[dict[str, Any]]:
    """The paper default's and the val-best's runs under ``root/folder/{default,best}/<family>/seed<k>``, one of each
    duplicate pair kept (the val-best is the paper default); the paper default's only for ``default_families``
    (default: every family)."""
    defaults = paper_defaults(params)
    kept: dict[tuple, dict[str, Any]] = {}
    for role in ROLES:
        for fam in study_families(params):
            if role == "default" and default_families is not None and fam not in default_families:
                continue
            want = (defaults if role == "default" else best)[fam]
            for seed in run_seeds:
                d = root / folder / role / fam / f"seed{seed}"
                keep_once(kept, (fam, setting_key(fam, want), seed),
                          read_run(d, fam, seed, role_prefix + role, want, prior=True), d, fam, seed)
    return list(kept.values())


def check_schedule(df: pd.DataFrame, params: Mapping[str, Any]) -> int:
    """T: the iterations every run but the calibration runs trained; those must have trained ``calibration.iters``
    = 2T. An error names a run that differs."""
    iters, _ = calibration(params)
    t = Counter(df.loc[~df["calibration"], "iters"]).most_common(1)[0][0]
    if not isinstance(t, int) or iters != 2 * t:
        raise ReportError(f"params: calibration.iters is {iters}, but the study's runs trained T = {t!r} "
                          "iterations: the calibration schedule is 2T")
    for r in df.itertuples():
        if r.iters != (iters if r.calibration else t):
            raise ReportError(f"{r.run_dir}/metrics.json: iters is {r.iters!r}, but "
                              + (f"calibration.iters is {iters}" if r.calibration else f"the study's T is {t}"))
    return t


def collect(runs: str | Path, params: Mapping[str, Any], best: Mapping[str, Mapping[str, Any]]) -> pd.DataFrame:
    """Every run of the design, one row per (family, setting, prior init, schedule, seed).

    ``best``: family -> the val-best setting (:func:`lossbench.report.select.select`); the ``best`` runs must have
    trained it and the ``default`` runs the paper default. Columns: ``run`` (path under ``runs``), ``family``,
    ``setting``, ``slug``, ``label``, ``order`` (grid index), ``seed``, ``role``, ``prior``, ``calibration`` (a 2T
    run), ``condition``, ``val_<metric>``, ``test_<metric>`` (fractions), ``val_curve`` [(iter, mAP50)], ``clip_*``,
    ``iters``, ``records``, ``final_*`` and timings. The study's runs come first, the calibration runs last
    (:func:`check_schedule` checks their iterations).
    """
    root = Path(runs)
    rows = grid_runs(root, params).to_dict("records")
    rows += _paired_runs(root, params, best, "extra", "", seeds(params, "extra_seeds"))
    rows += [read_run(root / "prior_off" / fam / f"seed{seed}", fam, seed, "prior_off", paper_defaults(params)[fam],
                      prior=False) for fam in study_families(params) for seed in seeds(params)]
    rows += _paired_runs(root, params, best, "calibration", "calibration_", calibration(params)[1])
    return _frame(rows, root, params)


def bootstrap(df: pd.DataFrame, n_boot: int, seed: int) -> np.ndarray:
    """Test mAP50 of every run of ``df`` on ``n_boot`` resamples of the test images, ``(n_boot, len(df))``,
    one shared resample per replicate (so differences are paired). Each run's records are read afresh
    and must reproduce its metrics.json test mAP50."""
    from lossbench.records import bootstrap_map, load_records, voc_map

    records = []
    for r in df.itertuples():
        if not r.records or not Path(r.records).is_file():
            raise ReportError(f"{r.run_dir}: no test records file ({r.records})")
        rec = load_records(r.records)
        value = voc_map(rec)
        if not abs(value - r.test_mAP50) <= RECORDS_TOLERANCE:
            raise ReportError(f"{r.records}: mAP50 from the records is {value!r} but "
                              f"{r.run_dir}/metrics.json says test mAP50 {r.test_mAP50!r}")
        records.append(rec)
    return np.asarray(bootstrap_map(records, n_boot=n_boot, seed=seed), dtype=float)
