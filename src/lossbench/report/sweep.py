"""The foreground-share sweep: each family's paper default and val-best retrained on synth
profiles whose share of positive anchors differs at constant compute (fewer labelled objects
per image on one canvas and batch), test mAP50 against the measured share of positive anchors.

Reads params.yaml's ``sweep`` (``profiles``: one synth profile per point; ``seeds``; ``runs``: ``{family, choose}``),
the runs ``RUNS/<profile>/<choose>/<family>/seed<k>/`` (``default``: the paper default; ``best``: the main grid's
val-best from the selection file; when the two are one setting, one of each pair is kept after checking that they agree)
and ``DATA/<profile>/raw/stats.json``. Each profile is its own test set: its own bootstrap, its own row in the tables.
At each point the paper defaults are compared across families, paired by seed (:func:`compare`), one Holm family over
every point.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lossbench.families import FAMILY_ORDER, setting_key, setting_label, slug
from lossbench.report import figures, stats, tables
from lossbench.report.build import provenance
from lossbench.report.collect import ROLES, ReportError, bootstrap, keep_once, paper_defaults, read_run
from lossbench.utils import atomic_path, read_json

ROLE_LABEL = {"default": "paper default", "best": "val-best", "both": "paper default = val-best"}
CONFIDENCE = stats.CONFIDENCE


def combined(per_seed: Sequence[float], boot: np.ndarray,
             confidence: float = CONFIDENCE) -> tuple[float, float, float, float]:
    """``(mean, lo, hi, p)`` over seeds with image noise: ``per_seed`` (n,), ``boot`` (n_boot, n)."""
    return tuple(map(float, stats.combined_interval(per_seed, boot, confidence=confidence)))


def ci_cell(mean: float, lo: float, hi: float) -> str:
    """``mean [lo, hi]`` of fractions, in %."""
    return tables.ci(100 * mean, 100 * lo, 100 * hi)


def arm(df: pd.DataFrame, condition: str) -> dict[int, int]:
    """seed -> row position of ``condition``'s runs; ``df`` has a RangeIndex, so a position is also the run's column
    in the bootstrap matrix."""
    g = df[df["condition"] == condition]
    return {int(s): int(i) for s, i in zip(g["seed"], g.index)}


def verdict(lo: float, hi: float) -> str:
    """``A > B`` / ``A < B`` where the interval of A − B excludes 0, else ``not resolved``."""
    if math.isnan(lo) or math.isnan(hi) or lo <= 0 <= hi:
        return "not resolved"
    return "A > B" if lo > 0 else "A < B"


COMPARISON_COLUMNS = ["group", "A", "B", "n", "seeds", "diff", "lo", "hi", "level", "p", "p_holm", "verdict"]


def compare(pairs: Sequence[tuple[str, str, dict[int, int], str, dict[int, int]]],
            values: np.ndarray, boot: np.ndarray) -> pd.DataFrame:
    """Paired test-mAP50 differences A − B over common seeds, Holm-corrected together.

    ``pairs``: ``(group, name_a, arm_a, name_b, arm_b)`` with arms seed -> run position; ``values`` (n_runs,) the runs'
    test mAP50, ``boot`` (n_boot, n_runs) their bootstrap. Per pair: per-seed differences and ``boot_a − boot_b`` (same
    replicates) go into the combined interval; its p-values are Holm-corrected (family-wise 1 − CONFIDENCE) and each
    interval is recomputed at the level Holm tests that pair at (``level``), so it excludes 0 exactly when Holm rejects.
    """
    prepared = []
    for group, na, a, nb, b in pairs:
        common = sorted(set(a) & set(b))
        if not common:
            raise ReportError(f"{na} vs {nb}: no common seed")
        pa, pb = [a[s] for s in common], [b[s] for s in common]
        prepared.append((group, na, nb, common, values[pa] - values[pb], boot[:, pa] - boot[:, pb]))
    # a single seed says nothing about seed noise: no interval, no test (left out of Holm's m)
    pvalues = [combined(d, bd)[3] if len(d) >= 2 else math.nan for *_, d, bd in prepared]
    adjusted, levels = stats.holm(pvalues, alpha=1 - CONFIDENCE) if prepared else ([], [])
    rows = []
    for (group, na, nb, common, d, bd), p, p_adj, level in zip(prepared, pvalues, adjusted, levels):
        row = {"group": group, "A": na, "B": nb, "n": len(common), "seeds": ",".join(map(str, common))}
        if len(common) < 2:
            rows.append({**row, "diff": float(d.mean()), "lo": math.nan, "hi": math.nan, "level": math.nan,
                         "p": math.nan, "p_holm": math.nan, "verdict": "not resolved (one seed)"})
            continue
        mean, lo, hi, _ = combined(d, bd, confidence=level)
        rows.append({**row, "diff": mean, "lo": lo, "hi": hi, "level": level, "p": p, "p_holm": p_adj,
                     "verdict": verdict(lo, hi)})
    return pd.DataFrame(rows, columns=COMPARISON_COLUMNS)


def comparison_sentence(r: pd.Series) -> str:
    """One comparison row in words, its verdict verbatim from the table."""
    return (f"{r['A']} vs {r['B']} ({r['group']}, {r['n']} seeds): A − B = {100 * r['diff']:+.1f} "
            f"points [{100 * r['lo']:+.1f}, {100 * r['hi']:+.1f}] at {100 * r['level']:.2f}%, "
            f"Holm p {r['p_holm']:.3f}: **{r['verdict']}**")


def comparison_tables(comp: pd.DataFrame, caption: str) -> dict[str, str]:
    """``{suffix: text}`` of :func:`compare`'s rows: A − B [interval at the Holm level]."""
    t = pd.DataFrame({
        "group": comp["group"], "A": comp["A"], "B": comp["B"], "seeds": comp["n"].astype(str),
        "A − B (pts)": [f"{100 * d:+.1f}" for d in comp["diff"]],
        "interval at Holm level (pts)": [f"[{100 * lo:+.1f}, {100 * hi:+.1f}] ({tables.level_text(lv)})"
                                         for lo, hi, lv in zip(comp["lo"], comp["hi"], comp["level"])],
        "Holm p": [f"{p:.3f}" for p in comp["p_holm"]], "verdict": comp["verdict"]})
    return tables.texts(t, 3, caption, comp)


def sweep_design(params: Mapping[str, Any], selection: Mapping[str, Any],
                 selection_path: str | Path) -> dict[str, list[tuple[str, dict[str, Any]]]]:
    """family -> ``[(role, setting)]`` the sweep trains, from ``sweep.runs``: the paper default
    and the selection's val-best. Every family needs its ``default``; its ``best`` may be left
    out only when the val-best is the paper default."""
    sweep = params.get("sweep")
    if not isinstance(sweep, Mapping):
        raise ReportError("params: missing the 'sweep' section")
    listed = sweep.get("runs")
    if not isinstance(listed, list) or not all(isinstance(r, Mapping) for r in listed):
        raise ReportError(f"params: sweep.runs must list {{family, choose}} mappings, got {listed!r}")
    pairs = {(r.get("family"), r.get("choose")) for r in listed}
    bad = sorted(p for p in pairs if p[0] not in FAMILY_ORDER or p[1] not in ROLES)
    if bad:
        raise ReportError(f"params: sweep.runs has entries {bad}; family must be one of "
                          f"{list(FAMILY_ORDER)} and choose one of {list(ROLES)}")
    defaults = paper_defaults(params)
    out = {}
    for fam in [f for f in FAMILY_ORDER if any(p[0] == f for p in pairs)]:
        best = ((selection.get("families") or {}).get(fam) or {}).get("best")
        if not isinstance(best, Mapping):
            raise ReportError(f"{selection_path}: no families.{fam}.best")
        if (fam, "default") not in pairs:
            raise ReportError(f"params: sweep.runs lacks {{family: {fam}, choose: default}}")
        if (fam, "best") not in pairs and setting_key(fam, best) != setting_key(fam, defaults[fam]):
            raise ReportError(f"params: sweep.runs lacks {{family: {fam}, choose: best}}, but the val-best in "
                              f"{selection_path} ({json.dumps(best)}) is not the paper default")
        out[fam] = [("default", defaults[fam])] + ([("best", dict(best))] if (fam, "best") in pairs else [])
    return out


def canvas_stats(data: Path, profile: str) -> tuple[int, float]:
    """``(anchors.image_size, anchors.positive_share)`` of ``data/<profile>/raw/stats.json``."""
    path = data / profile / "raw" / "stats.json"
    if not path.is_file():
        raise ReportError(f"missing {path} (the sweep profile's data statistics)")
    anchors = read_json(path).get("anchors") or {}
    share, size = anchors.get("positive_share"), anchors.get("image_size")
    if not isinstance(share, int | float) or not 0 < share <= 1:
        raise ReportError(f"{path}: anchors.positive_share must be a fraction in (0, 1], got {share!r}")
    if not isinstance(size, int):
        raise ReportError(f"{path}: anchors.image_size must be the canvas size in pixels, got {size!r}")
    return size, float(share)


def objects_per_image(data: Path, profile: str) -> float | None:
    """Mean labelled objects per training image (``splits.train.objects_per_image.mean`` of
    the profile's ``stats.json``), or None where the statistics do not give it."""
    stats = read_json(data / profile / "raw" / "stats.json")
    mean = (((stats.get("splits") or {}).get("train") or {}).get("objects_per_image") or {}).get("mean")
    return float(mean) if isinstance(mean, int | float) and mean > 0 else None


def collect_sweep(runs: str | Path, data: str | Path, params: Mapping[str, Any],
                  selection_path: str | Path) -> pd.DataFrame:
    """One row per sweep run (duplicates of a val-best that is the paper default merged), profile by profile:
    :func:`lossbench.report.collect.read_run`'s fields plus ``profile``, ``canvas``, ``objects_per_image``,
    ``positive_share``, ``condition``, ``label`` and ``role`` (``both`` when merged)."""
    root, data = Path(runs), Path(data)
    if not Path(selection_path).is_file():
        raise ReportError(f"selection file {selection_path} does not exist")
    design = sweep_design(params, read_json(selection_path), selection_path)
    sweep = params["sweep"]
    profiles = sweep.get("profiles")
    if not isinstance(profiles, list) or not profiles:
        raise ReportError("params: sweep.profiles must list the sweep's profiles")
    rows = []
    for profile in profiles:
        size, share = canvas_stats(data, profile)
        per_image = objects_per_image(data, profile)
        kept: dict[tuple, dict[str, Any]] = {}
        for fam in design:
            for role, setting in design[fam]:
                for seed in sweep.get("seeds") or []:
                    d = root / profile / role / fam / f"seed{seed}"
                    r = read_run(d, fam, seed, role, None, prior=True)
                    if setting_key(fam, r["setting"]) != setting_key(fam, setting):
                        where = (f"families.{fam}.best of {selection_path}" if role == "best"
                                 else f"the paper default ({fam}.default)")
                        raise ReportError(f"{d}/metrics.json: setting is {r['setting']}, but {where} "
                                          f"is {dict(setting)}")
                    other = keep_once(kept, (fam, setting_key(fam, setting), seed), r, d, fam, seed)
                    if other is not None:
                        other["role"] = "both"
                        continue
                    r.update(run=d.relative_to(root).as_posix(), profile=profile, canvas=size,
                             positive_share=share, objects_per_image=per_image, label=setting_label(fam, setting),
                             condition=f"{profile}/{fam}/{slug(fam, setting)}")
        rows += kept.values()
    return pd.DataFrame(rows)


def point_labels(summary: pd.DataFrame) -> dict[str, str]:
    """profile -> how its point differs from the others: its objects per image (e.g. ``4
    objects/image``), or its canvas where those do not differ or are not known."""
    prof = summary.drop_duplicates("profile")
    differ = prof["objects_per_image"].dropna().nunique() > 1
    return {r.profile: (f"{r.objects_per_image:.3g} object{'' if r.objects_per_image == 1 else 's'}/image"
                        if differ and not pd.isna(r.objects_per_image) else f"{r.canvas} px")
            for r in prof.itertuples()}


def summarise_sweep(df: pd.DataFrame, boot: np.ndarray) -> pd.DataFrame:
    """One row per (profile, family, role): mean test mAP50 and its combined 95% interval."""
    rows = []
    for cond, g in df.groupby("condition", sort=False):
        mean, lo, hi, _ = combined(g["test_mAP50"], boot[:, list(g.index)])
        r = g.iloc[0]
        batch = "/".join(sorted({str(b) for b in g["batch_size"]}))
        per_step = (r["objects_per_image"] * g["batch_size"].mean()
                    if r["objects_per_image"] is not None and g["batch_size"].notna().all() else None)
        rows.append({"profile": r["profile"], "canvas": r["canvas"], "objects_per_image": r["objects_per_image"],
                     "batch": batch, "positive_share": r["positive_share"],
                     "objects_per_step": per_step, "family": r["family"], "role": r["role"],
                     "label": r["label"], "condition": cond, "n": len(g), "mean": mean, "lo": lo, "hi": hi,
                     "clip_mean": g["clip_fraction"].mean(), "clip_max": g["clip_fraction"].max(),
                     "clip_max_norm": g["clip_max_norm"].max()})
    out = pd.DataFrame(rows)
    labels = point_labels(out)
    out.insert(1, "point", out["profile"].map(labels))
    return out


def sweep_comparisons(df: pd.DataFrame, boot: np.ndarray, summary: pd.DataFrame) -> pd.DataFrame:
    """At each point of the sweep, paper default against paper default across families (paired
    by seed), every point's comparisons in one Holm family."""
    pairs = []
    for point, g in summary[summary.role.isin(["default", "both"])].groupby("point", sort=False):
        by = {r.family: r for r in g.itertuples()}
        fams = [f for f in FAMILY_ORDER if f in by]
        for i, fa in enumerate(fams):
            for fb in fams[i + 1:]:
                a, b = by[fa], by[fb]
                pairs.append((point, f"{fa} {a.label}", arm(df, a.condition),
                              f"{fb} {b.label}", arm(df, b.condition)))
    return compare(pairs, df["test_mAP50"].to_numpy(dtype=float), boot)


def _point_table(summary: pd.DataFrame, name: str, column: list[str], cell) -> pd.DataFrame:
    """One row per point: canvas, objects / image, batch, ``column`` (``name``), then one column per
    family and role, ``cell(row)``."""
    prof = summary.drop_duplicates("profile")
    t = pd.DataFrame({"canvas (px)": prof["canvas"].astype(str).tolist(),
                      "objects / image": ["n/a" if pd.isna(v) else f"{v:.3g}" for v in prof["objects_per_image"]],
                      "batch": prof["batch"].astype(str).tolist(), name: column})
    cells: dict[str, dict[str, str]] = {}
    for r in summary.itertuples():
        cells.setdefault(f"{r.family} {r.label} ({ROLE_LABEL[r.role]})", {})[r.profile] = cell(r)
    for col, by in cells.items():
        t[col] = [by.get(p, "n/a") for p in prof["profile"]]
    return t


def sweep_tables(summary: pd.DataFrame) -> dict[str, str]:
    """``{suffix: text}``: one row per point of the sweep, one column per family and role."""
    shares = [f"{100 * s:.3g}" for s in summary.drop_duplicates("profile")["positive_share"]]
    t = _point_table(summary, "positive anchors (%)", shares, lambda r: ci_cell(r.mean, r.lo, r.hi))
    caption = (f"Foreground-share sweep: test mAP50 per point, {tables.CAPTION}; intervals 95% (combined: seeds + "
               f"{tables.N_BOOT} test-image bootstrap replicates). positive anchors: measured share of anchors "
               "assigned positive on the point's data; objects / image: mean labelled objects per training image.")
    return tables.texts(t, 4, caption, summary.drop(columns="condition"))


def conditions_tables(summary: pd.DataFrame) -> dict[str, str]:
    """``{suffix: text}``: per point, the canvas, objects per image, batch, the objects per training
    step and, per family and role, the share of clipped steps (mean over seeds, and the largest)."""
    steps = ["n/a" if pd.isna(v) else f"{v:.3g}" for v in summary.drop_duplicates("profile")["objects_per_step"]]
    t = _point_table(summary, "objects per step", steps, lambda r: "n/a" if pd.isna(r.clip_mean)
                     else f"{100 * r.clip_mean:.1f} (max {100 * r.clip_max:.1f})")
    caption = ("Training conditions per point: canvas, labelled objects per training image, batch, "
               "labelled objects per training step (objects per image x batch) and, per family and "
               "setting, the share of steps whose gradient norm was clipped, % (mean over seeds, and the largest).")
    return tables.texts(t, 4, caption, summary[["profile", "point", "canvas", "objects_per_image", "family",
                                                 "role", "label", "batch", "objects_per_step", "clip_mean",
                                                 "clip_max"]])


def build_sweep_report(runs: str | Path, data: str | Path, params: Mapping[str, Any],
                       selection: str | Path, out: str | Path) -> dict[str, Any]:
    """Write ``out``: README.md, tables/sweep*.{md,csv,tex}, figures/sweep_mAP50_vs_positive_share.*,
    provenance.json (atomically, as a whole)."""
    df = collect_sweep(runs, data, params, selection)
    # each profile is its own test set: its own bootstrap, blocks side by side in df's order
    boot = np.concatenate([bootstrap(df[df.profile == p], tables.N_BOOT, tables.BOOT_SEED)
                           for p in df["profile"].unique()], axis=1)
    summary = summarise_sweep(df, boot)
    comp = sweep_comparisons(df, boot, summary)
    text = {f"sweep{sfx}": t for sfx, t in sweep_tables(summary).items()}
    text.update({f"sweep_conditions{sfx}": t for sfx, t in conditions_tables(summary).items()})
    caption = ("Paired differences of test mAP50 (points) between the families' paper defaults at each point of the "
               f"sweep, A − B over common seeds; interval: seeds + test images ({tables.N_BOOT} bootstrap replicates "
               "shared by A and B) at the level Holm tests it at; every row of the table is one Holm family "
               "(family-wise 95%). A > B or A < B only where that interval excludes 0; otherwise not resolved.")
    text.update({f"sweep_comparisons{sfx}": t for sfx, t in comparison_tables(comp, caption).items()})
    prov = provenance(df, "sweep", {"n_boot": tables.N_BOOT, "seed": tables.BOOT_SEED})
    with atomic_path(out) as tmp:
        (tmp / "tables").mkdir(parents=True)
        for name, t in text.items():
            (tmp / "tables" / name).write_text(t)
        figures.sweep(summary, tmp / "figures")
        (tmp / "provenance.json").write_text(json.dumps(prov, indent=2) + "\n")
        (tmp / "README.md").write_text(_readme(summary, comp, text, prov, params))
    return {"runs": df, "summary": summary, "comparisons": comp, "provenance": prov}


def _conditions_text(summary: pd.DataFrame) -> str:
    """What changes with the share of positive anchors besides the share, in words."""
    prof = summary.drop_duplicates("profile")
    norms = sorted({f"{v:g}" for v in summary["clip_max_norm"].dropna()})
    steps = ", ".join("n/a" if pd.isna(v) else f"{v:.3g}" for v in prof["objects_per_step"])
    return (f"Canvas ({prof['canvas'].iloc[0]} px), batch ({prof['batch'].iloc[0]}), network, schedule and lr "
            "are the same at every point, so compute and BatchNorm's batch are too. What the share of positive "
            f"anchors brings with it: each training step sees fewer labelled objects ({steps} per step), "
            "so fewer positive anchors in absolute terms, not only as a share, and the gradient-norm clip"
            + (f" (max_norm {', '.join(norms)})" if norms else "") + " acts on a different share of steps. At "
            "constant compute the two cannot be separated; the sweep measures rarer foreground with fewer "
            "labelled examples, not rarity alone.")


def _readme(summary: pd.DataFrame, comp: pd.DataFrame, text: dict[str, str], prov: dict[str, Any],
            params: Mapping[str, Any]) -> str:
    sweep_seeds = ",".join(map(str, params["sweep"].get("seeds") or []))
    parts = ["# lossbench report — foreground-share sweep", "",
             "Generated by `lossbench sweep-report` from the sweep runs' `metrics.json`, their test "
             "records and each profile's data statistics; do not edit by hand.", "",
             "Each family's paper default and its val-best on the main grid (chosen on val, `selection.json`) "
             "retrained at each point of the sweep: synth data whose share of positive anchors differs at "
             f"near-constant compute. Seeds {sweep_seeds}. Test mAP50 (VOC-style, area, %) with 95% intervals that add "
             f"seed noise and test-image noise ({prov['bootstrap']['n_boot']} bootstrap replicates, seed "
             f"{prov['bootstrap']['seed']}, per point: each has its own test set).", "",
             "![sweep](figures/sweep_mAP50_vs_positive_share.png)", "", text["sweep.md"],
             "## Paper defaults compared at each point", "", "In words (verdicts verbatim from the table):", ""]
    parts += [f"- {comparison_sentence(r)}" for _, r in comp.iterrows()]
    parts += ["", text["sweep_comparisons.md"], "## Training conditions per point", "",
              _conditions_text(summary), "", text["sweep_conditions.md"]]
    parts += ["## Provenance", "", "```json", json.dumps(prov, indent=2), "```", ""]
    return "\n".join(parts)
