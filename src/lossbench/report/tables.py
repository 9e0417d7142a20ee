"""The report's numbers and tables: one row per condition, the Holm-corrected comparisons, calibration, clipping and
the prior-off ablation. Cells are made once; Markdown by ``DataFrame.to_markdown``, LaTeX (booktabs) by
``Styler.to_latex``, CSV holds the numbers.

Intervals (95%): val mAP50 a Student-t interval over seeds; test mAP50 the combined interval of
:func:`lossbench.report.stats.combined_interval`, which adds the seed noise (t over seeds) and the test-image noise (a
bootstrap of the seed mean over test images, ``N_BOOT`` replicates, seed ``BOOT_SEED``, one image resample per replicate
shared by every run of a test set).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from lossbench.families import FAMILIES, setting_key
from lossbench.report import stats
from lossbench.report.collect import ReportError, families_of

N_BOOT = 1000  # bootstrap replicates over test images (fixed)
BOOT_SEED = 0  # their resampling seed (fixed)
CONFIDENCE = stats.CONFIDENCE
PLATEAU_PTS = 1.5  # a mean val gain below this over the last 25% of iterations is a plateau
TARGET_VAL = 0.5  # the study's target for the final val mAP50
CAPTION = "VOC-style mAP@0.5 (area under the interpolated precision-recall curve), %; intervals 95%"
BEST, DEFAULT = "★", "†"


def combined(per_seed: Sequence[float], boot: np.ndarray,
             confidence: float = CONFIDENCE) -> tuple[float, float, float, float]:
    """``(mean, lo, hi, p)`` over seeds with image noise: ``per_seed`` (n,), ``boot`` (n_boot, n)."""
    return tuple(map(float, stats.combined_interval(per_seed, boot, confidence=confidence)))


def arm(df: pd.DataFrame, condition: str, only: Sequence[int] | None = None) -> dict[int, int]:
    """seed -> row position of ``condition``'s runs (restricted to seeds ``only``); ``df`` has a
    RangeIndex, so a position is also the run's column in the bootstrap matrix."""
    g = df[df["condition"] == condition]
    return {int(s): int(i) for s, i in zip(g["seed"], g.index) if only is None or s in only}


def _pct(x: float) -> str:
    return "n/a" if math.isnan(x) else f"{100 * x:.1f}"


def ci_cell(mean: float, lo: float, hi: float) -> str:
    """``mean [lo, hi]`` in %, one decimal."""
    if math.isnan(mean):
        return "n/a"
    return _pct(mean) + ("" if math.isnan(lo) else f" [{_pct(lo)}, {_pct(hi)}]")


def summarise(df: pd.DataFrame, boot: np.ndarray, selection: Mapping[str, Any]) -> pd.DataFrame:
    """One row per condition (family x setting x prior init), report order.

    ``val_*``: mean val mAP50 and its t-interval over the grid seeds (those the selection used); ``test_*``: mean test
    mAP50 over every seed of the condition and its combined interval; ``AP_mean``: mean test COCO AP; ``clip_mean`` /
    ``clip_max``: clipped-step fraction over seeds.
    """
    grid_seeds = list(selection["seeds"])
    rows = []
    for cond, g in df.groupby("condition", sort=False):
        fam, setting = g["family"].iloc[0], g["setting"].iloc[0]
        choice = selection["families"][fam]
        key = setting_key(fam, setting)
        pos = list(g.index)
        test = combined(g["test_mAP50"], boot[:, pos])
        v = g[g["seed"].isin(grid_seeds)]["val_mAP50"]
        vmean, _, vlo, vhi = stats.t_interval(v.tolist())
        norms = sorted({"none" if math.isnan(x) else f"{x:g}" for x in g["clip_max_norm"]})
        rows.append({
            "condition": cond, "family": fam, "order": g["order"].iloc[0], "label": g["label"].iloc[0],
            "prior": bool(g["prior"].iloc[0]), "n": len(g), "seeds": ",".join(map(str, g["seed"])),
            "val_n": len(v), "val_mean": vmean, "val_lo": vlo, "val_hi": vhi,
            "test_mean": test[0], "test_lo": test[1], "test_hi": test[2],
            "AP_mean": float(g["test_AP"].mean()), "clip_mean": float(g["clip_fraction"].mean()),
            "clip_max": float(g["clip_fraction"].max()), "max_norm": "/".join(norms),
            "best": key == setting_key(fam, choice["best"]) and bool(g["prior"].iloc[0]),
            "default": key == setting_key(fam, choice["default"]) and bool(g["prior"].iloc[0])})
    return pd.DataFrame(rows)


def arm_name(r: Mapping[str, Any]) -> str:
    """``focal γ 2, α 0.25 (default)`` from a summary row."""
    tags = [t for t, on in (("val-best", r["best"]), ("default", r["default"]), ("prior off", not r["prior"])) if on]
    return f"{r['family']} {r['label']}" + (f" ({', '.join(tags)})" if tags else "")


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


def comparisons(df: pd.DataFrame, boot: np.ndarray, summary: pd.DataFrame, grid_seeds: Sequence[int]) -> pd.DataFrame:
    """Every comparison of the study, one Holm family:

    - within each family, every other grid setting − the paper default (grid seeds);
    - across families, val-best − val-best, and paper default − paper default (every common
      seed; a default pair that is the val-best pair already is not repeated);
    - each family's paper default with the prior init − without it (grid seeds).
    """
    rows = summary.set_index("condition", drop=False)
    on = rows[rows["prior"]]
    pick = {fam: {role: on[(on["family"] == fam) & on[role]].iloc[0] for role in ("best", "default")}
            for fam in families_of(on)}
    pairs = []
    for fam in pick:
        ref = pick[fam]["default"]
        for _, r in on[(on["family"] == fam) & ~on["default"]].iterrows():
            pairs.append((f"within {fam}", arm_name(r), arm(df, r["condition"], grid_seeds),
                          arm_name(ref), arm(df, ref["condition"], grid_seeds)))
    seen = set()
    for role, group in (("best", "val-best across families"), ("default", "paper default across families")):
        for i, fa in enumerate(pick):
            for fb in list(pick)[i + 1:]:
                a, b = pick[fa][role], pick[fb][role]
                if (a["condition"], b["condition"]) in seen:
                    continue
                seen.add((a["condition"], b["condition"]))
                pairs.append((group, arm_name(a), arm(df, a["condition"]), arm_name(b), arm(df, b["condition"])))
    for fam in pick:
        ref = pick[fam]["default"]
        off = rows[(rows["family"] == fam) & ~rows["prior"]].iloc[0]
        pairs.append(("prior init", arm_name(ref), arm(df, ref["condition"], grid_seeds),
                      arm_name(off), arm(df, off["condition"], grid_seeds)))
    return compare(pairs, df["test_mAP50"].to_numpy(dtype=float), boot)


def gain_last_quarter(curve: Sequence[tuple[int, float]], final: float, where: str) -> float:
    """val mAP50 at the last point of the curve minus at the point nearest 75% of its iterations.
    The last point must be the run's final val mAP50 (``final``, to 1e-6) and the 75% point within 5% of the schedule
    of 0.75 x the last iteration; otherwise an error naming ``where``."""
    if len(curve) < 2:
        raise ReportError(f"{where}: val_curve has {len(curve)} point(s); the calibration needs 2")
    last_iter, last = curve[-1]
    if not abs(last - final) <= 1e-6:
        raise ReportError(f"{where}: the last val_curve point ({last!r}) is not metrics.val.mAP50 ({final!r})")
    it, v = min(curve[:-1], key=lambda p: abs(p[0] - 0.75 * last_iter))
    if abs(it - 0.75 * last_iter) > 0.05 * last_iter:
        raise ReportError(f"{where}: val_curve has no point near 75% of {last_iter} iterations")
    return last - v


def calibration(df: pd.DataFrame, summary: pd.DataFrame) -> pd.DataFrame:
    """For each family's val-best and paper default: the val mAP50 gain over the last 25% of
    iterations (mean, t-interval over every seed), plateau (mean gain < ``PLATEAU_PTS``) and the
    final val mAP50 against ``TARGET_VAL``."""
    rows = []
    for _, r in summary[summary["prior"] & (summary["best"] | summary["default"])].iterrows():
        g = df[df["condition"] == r["condition"]]
        gains = [gain_last_quarter(c, v, d) for c, v, d in zip(g["val_curve"], g["val_mAP50"], g["run_dir"])]
        mean, _, lo, hi = stats.t_interval(gains)
        fmean, _, flo, fhi = stats.t_interval(g["val_mAP50"].tolist())
        role = " = ".join(t for t, on in (("val-best", r["best"]), ("paper default", r["default"])) if on)
        rows.append({"family": r["family"], "role": role, "label": r["label"], "n": len(g),
                     "gain_mean": mean, "gain_lo": lo, "gain_hi": hi,
                     "plateau": "yes" if 100 * mean < PLATEAU_PTS else "no",
                     "final_mean": fmean, "final_lo": flo, "final_hi": fhi,
                     "target_met": "yes" if fmean >= TARGET_VAL else "no"})
    return pd.DataFrame(rows)


def _md(t: pd.DataFrame, caption: str = "") -> str:
    return (f"{caption}\n\n" if caption else "") + t.to_markdown(index=False, disable_numparse=True) + "\n"


def _tex_escape(s: str) -> str:
    s = s.replace("%", r"\%").replace("_", r"\_").replace("λ\\_noobj", r"$\lambda_\mathrm{noobj}$")
    return (s.replace("γ", r"$\gamma$").replace("α", r"$\alpha$").replace("λ", r"$\lambda$")
            .replace("−", "--").replace("≥", r"$\geq$").replace(BEST, r"$\star$")
            .replace(DEFAULT, r"\dag{}"))


def _tex(t: pd.DataFrame, n_lead: int, caption: str) -> str:
    """booktabs table with ``caption``; the first ``n_lead`` columns left-aligned."""
    sty = t.rename(columns=_tex_escape).style.hide(axis="index").format(_tex_escape)
    return sty.to_latex(hrules=True, caption=_tex_escape(caption),
                        column_format="l" * n_lead + "c" * (t.shape[1] - n_lead))


def texts(t: pd.DataFrame, n_lead: int, caption: str, csv: pd.DataFrame) -> dict[str, str]:
    return {".md": _md(t, caption), ".tex": _tex(t, n_lead, caption),
            ".csv": csv.to_csv(index=False, float_format="%.6f")}


def family_tables(summary: pd.DataFrame, family: str, grid_seeds: Sequence[int]) -> dict[str, str]:
    """``{suffix: text}``: one row per grid setting of ``family`` (prior init on)."""
    g = summary[(summary["family"] == family) & summary["prior"]].sort_values("order")
    marks = [(BEST if b else "") + (DEFAULT if d else "") for b, d in zip(g["best"], g["default"])]
    t = pd.DataFrame({
        f"setting ({FAMILIES[family].knob_label})": [f"{lab} {m}".rstrip() for lab, m in zip(g["label"], marks)],
        "seeds (val / test)": [f"{v} / {n}" for v, n in zip(g["val_n"], g["n"])],
        "val mAP50 [t]": [ci_cell(*x) for x in zip(g["val_mean"], g["val_lo"], g["val_hi"])],
        "test mAP50 [seeds + images]": [ci_cell(*x) for x in zip(g["test_mean"], g["test_lo"], g["test_hi"])],
        "test AP": [_pct(x) for x in g["AP_mean"]], "clipped steps": [_pct(x) for x in g["clip_mean"]]})
    seeds = ",".join(map(str, grid_seeds))
    caption = (f"{FAMILIES[family].label}. {CAPTION}: val split over seeds {seeds} (t-interval; {BEST} = highest mean, "
               f"the val-best), test split over every seed of the setting (combined interval: seeds + {N_BOOT} "
               f"test-image bootstrap replicates); {DEFAULT} = paper default. test AP: COCO-style AP@[.5:.95], mean "
               "over seeds. clipped steps: share of steps whose gradient norm was clipped, mean over seeds.")
    cols = ["label", "best", "default", "n", "seeds", "val_n", "val_mean", "val_lo", "val_hi",
            "test_mean", "test_lo", "test_hi", "AP_mean", "clip_mean", "clip_max", "max_norm"]
    return texts(t, 1, caption, g[cols])


def _levels(x: float) -> str:
    return f"{100 * x:.2f}".rstrip("0").rstrip(".") + "%"


def comparison_tables(comp: pd.DataFrame, caption: str | None = None) -> dict[str, str]:
    """``{suffix: text}`` of :func:`compare`'s rows: A − B [interval at the Holm level]."""
    t = pd.DataFrame({
        "group": comp["group"], "A": comp["A"], "B": comp["B"], "seeds": comp["n"].astype(str),
        "A − B (pts)": [f"{100 * d:+.1f}" for d in comp["diff"]],
        "interval at Holm level (pts)": [f"[{100 * lo:+.1f}, {100 * hi:+.1f}] ({_levels(lv)})"
                                         for lo, hi, lv in zip(comp["lo"], comp["hi"], comp["level"])],
        "Holm p": [f"{p:.3f}" for p in comp["p_holm"]], "verdict": comp["verdict"]})
    caption = caption or (
        f"Paired differences of test mAP50 (percentage points), A − B over the seeds both have. "
        f"The interval adds seed noise and test-image noise (bootstrap, {N_BOOT} replicates shared "
        "by A and B) and is taken at the level Holm's procedure tests the comparison at: every "
        f"row of this table is one Holm family (family-wise {100 * CONFIDENCE:g}%). A verdict "
        "A > B or A < B only where that interval excludes 0; otherwise not resolved.")
    return texts(t, 3, caption, comp)


def prior_off_tables(df: pd.DataFrame, boot: np.ndarray, summary: pd.DataFrame,
                     comp: pd.DataFrame, grid_seeds: Sequence[int]) -> dict[str, str]:
    """Each family's paper default with and without the prior-probability init (grid seeds),
    with the difference and verdict of the ``prior init`` rows of ``comp``."""
    rows = []
    diff = comp[comp["group"] == "prior init"].set_index("A")
    for fam in families_of(summary):
        on = summary[(summary["family"] == fam) & summary["prior"] & summary["default"]].iloc[0]
        off = summary[(summary["family"] == fam) & ~summary["prior"]].iloc[0]
        cells = {}
        for name, r in (("on", on), ("off", off)):
            pos = list(arm(df, r["condition"], grid_seeds).values())
            cells[name] = combined(df.loc[pos, "test_mAP50"], boot[:, pos])
        d = diff.loc[arm_name(on)]
        rows.append({"family": fam, "setting": on["label"], "seeds": d["n"],
                     "on_mean": cells["on"][0], "on_lo": cells["on"][1], "on_hi": cells["on"][2],
                     "off_mean": cells["off"][0], "off_lo": cells["off"][1], "off_hi": cells["off"][2],
                     "diff": d["diff"], "lo": d["lo"], "hi": d["hi"], "level": d["level"],
                     "p_holm": d["p_holm"], "verdict": d["verdict"]})
    n = pd.DataFrame(rows)
    t = pd.DataFrame({
        "family": n["family"], "paper default": n["setting"], "seeds": n["seeds"].astype(str),
        "prior init on": [ci_cell(*x) for x in zip(n["on_mean"], n["on_lo"], n["on_hi"])],
        "prior init off": [ci_cell(*x) for x in zip(n["off_mean"], n["off_lo"], n["off_hi"])],
        "on − off (pts) [Holm level]": [f"{100 * d:+.1f} [{100 * lo:+.1f}, {100 * hi:+.1f}] ({_levels(lv)})"
                                        for d, lo, hi, lv in zip(n["diff"], n["lo"], n["hi"], n["level"])],
        "verdict (A = on)": n["verdict"]})
    caption = (f"Prior-probability bias init on vs off, paper default of each family, test mAP50 "
               f"over seeds {','.join(map(str, grid_seeds))}. {CAPTION} (combined: seeds + test "
               "images). The difference is a row of the comparison table, corrected in its Holm family.")
    return texts(t, 2, caption, n)


def calibration_tables(cal: pd.DataFrame) -> dict[str, str]:
    t = pd.DataFrame({
        "family": cal["family"], "role": cal["role"], "setting": cal["label"], "seeds": cal["n"].astype(str),
        "val gain, last 25% (pts) [t]": [f"{100 * m:+.1f} [{100 * lo:+.1f}, {100 * hi:+.1f}]"
                                         for m, lo, hi in zip(cal["gain_mean"], cal["gain_lo"], cal["gain_hi"])],
        f"plateau (gain < {PLATEAU_PTS:g})": cal["plateau"],
        "final val mAP50 [t]": [ci_cell(*x) for x in zip(cal["final_mean"], cal["final_lo"], cal["final_hi"])],
        f"≥ {100 * TARGET_VAL:g}%": cal["target_met"]})
    caption = (f"Calibration of the schedule: val mAP50 at the end of training minus at 75% of "
               f"the iterations, mean over seeds with a 95% t-interval, in points; plateau = a "
               f"mean gain below {PLATEAU_PTS:g} points. Final val mAP50 (%) against the study's "
               f"target of {100 * TARGET_VAL:g}%.")
    return texts(t, 3, caption, cal)


def clipping_tables(summary: pd.DataFrame) -> dict[str, str]:
    s = summary
    t = pd.DataFrame({
        "family": s["family"],
        "setting": [lab + ("" if p else " (prior off)") for lab, p in zip(s["label"], s["prior"])],
        "seeds": s["n"].astype(str), "max_norm": s["max_norm"],
        "clipped steps, mean (%)": [_pct(x) for x in s["clip_mean"]],
        "max over seeds (%)": [_pct(x) for x in s["clip_max"]]})
    caption = ("Gradient-norm clipping: share of training steps whose total gradient norm "
               "exceeded max_norm and was scaled down, per setting over its seeds.")
    return texts(t, 2, caption, s[["family", "label", "prior", "n", "max_norm", "clip_mean", "clip_max"]])
