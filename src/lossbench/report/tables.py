"""Ablation tables (Markdown, CSV, LaTeX booktabs) from the collected runs.

The printed cells are made once (:func:`_table`); Markdown comes from
``DataFrame.to_markdown`` (tabulate), LaTeX from ``Styler.to_latex``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from lossbench.report.collect import KNOB_LABEL, METRICS
from lossbench.report.stats import paired_difference, t_interval

PRIMARY = "mAP50"  # the metric that picks the best row


def summarise(df: pd.DataFrame) -> pd.DataFrame:
    """One row per (family, setting): n of n_expected seeds, mean/std/CI of every metric."""
    rows = []
    for (family, order), g in df.groupby(["family", "order"], sort=False):
        ok = g[g["status"] == "ok"]
        row: dict[str, Any] = {"family": family, "order": order, "label": g["label"].iloc[0],
                               "value": g["value"].iloc[0], "n": len(ok), "n_expected": len(g),
                               "missing_seeds": ",".join(str(s) for s in g.loc[g.status != "ok", "seed"])}
        for m in METRICS:
            mean, std, lo, hi = t_interval(ok[m].astype(float).tolist())
            row.update({f"{m}_mean": mean, f"{m}_std": std, f"{m}_lo": lo, f"{m}_hi": hi})
        rows.append(row)
    out = pd.DataFrame(rows)
    out["best"] = False
    for _, g in out.groupby("family", sort=False):
        complete = g[g["n"] == g["n_expected"]]
        pool = complete if len(complete) else g[g["n"] > 0]
        if len(pool) and pool[f"{PRIMARY}_mean"].notna().any():
            out.loc[pool[f"{PRIMARY}_mean"].idxmax(), "best"] = True
    return out


def _cell(r: pd.Series, m: str, interval: bool) -> str:
    """``mean ± std [95% CI]`` in %; ``missing`` (no run) or ``n/a`` (e.g. APl on small images)."""
    mean, std = r[f"{m}_mean"], r[f"{m}_std"]
    if math.isnan(mean):
        return "missing" if r["n"] == 0 else "n/a"
    if math.isnan(std):
        return f"{100 * mean:.1f} (n=1)"
    ci = f" [{100 * r[f'{m}_lo']:.1f}, {100 * r[f'{m}_hi']:.1f}]" if interval else ""
    return f"{100 * mean:.1f} ± {100 * std:.1f}{ci}"


def _table(rows: pd.DataFrame, lead: dict[str, Any], interval: bool = True) -> pd.DataFrame:
    """The printed cells: the ``lead`` columns, seeds, one column per metric."""
    t = pd.DataFrame(lead, index=rows.index)
    t["seeds"] = [f"{n}/{e}" for n, e in zip(rows["n"], rows["n_expected"])]
    for m in METRICS:
        t[m] = [_cell(r, m, interval) for _, r in rows.iterrows()]
    return t


def _md(t: pd.DataFrame, bold: pd.Series | None = None) -> str:
    if bold is not None:
        t = t.copy()
        t.loc[bold] = "**" + t.loc[bold] + "**"
    return t.to_markdown(index=False, disable_numparse=True) + "\n"


def _tex_escape(s: str) -> str:
    return (s.replace("±", r"$\pm$").replace("γ", r"$\gamma$").replace("α", r"$\alpha$")
            .replace("λ_noobj", r"$\lambda_\mathrm{noobj}$").replace("%", r"\%"))


def _tex(t: pd.DataFrame, n_lead: int, bold: pd.Series | None = None) -> str:
    """booktabs table; rows in ``bold`` as ``\\textbf``."""
    sty = t.rename(columns=_tex_escape).style.hide(axis="index").format(_tex_escape)
    if bold is not None:
        sty = sty.apply(lambda c: np.where(bold, "textbf: --rwrap;", ""), axis=0)
    return sty.to_latex(hrules=True, column_format="l" * n_lead + "c" * (t.shape[1] - n_lead))


def family_tables(summary: pd.DataFrame, family: str) -> dict[str, str]:
    """``{suffix: text}`` of one family: knob values x metrics, best row in bold.

    Markdown cells read mean ± std [95% CI] in %, LaTeX cells mean ± std, CSV holds the numbers.
    """
    g = summary[summary["family"] == family].sort_values("order")
    lead = {KNOB_LABEL[family]: g["label"]}
    cols = ["label", "value", "n", "n_expected", "missing_seeds", "best"] + [
        f"{m}_{s}" for m in METRICS for s in ("mean", "std", "lo", "hi")]
    return {".md": _md(_table(g, lead), g["best"]),
            ".tex": _tex(_table(g, lead, interval=False), 1, g["best"]),
            ".csv": g[cols].rename(columns={"label": KNOB_LABEL[family]}).to_csv(
                index=False, float_format="%.6f")}


def cross_family(df: pd.DataFrame, summary: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Each family's best setting, and the paired differences between them (mAP50)."""
    best = summary[summary["best"]].reset_index(drop=True)
    per_seed = {}
    for _, r in best.iterrows():
        g = df[(df.family == r["family"]) & (df.order == r["order"]) & (df.status == "ok")]
        per_seed[r["family"]] = (r["label"], dict(zip(g["seed"], g[PRIMARY].astype(float))))
    diffs = []
    fams = list(per_seed)
    for i, a in enumerate(fams):
        for b in fams[i + 1:]:
            mean, lo, hi, n = paired_difference(per_seed[a][1], per_seed[b][1])
            diffs.append({"a": a, "setting_a": per_seed[a][0], "b": b, "setting_b": per_seed[b][0],
                          "diff_mean": mean, "diff_lo": lo, "diff_hi": hi, "n_pairs": n})
    return best, pd.DataFrame(diffs, columns=["a", "setting_a", "b", "setting_b", "diff_mean",
                                              "diff_lo", "diff_hi", "n_pairs"])


def _difference(d: dict[str, Any]) -> str:
    if math.isnan(d["diff_mean"]):
        return "n/a"
    if math.isnan(d["diff_lo"]):
        return f"{100 * d['diff_mean']:+.1f} (one seed, no interval)"
    return f"{100 * d['diff_mean']:+.1f} [{100 * d['diff_lo']:+.1f}, {100 * d['diff_hi']:+.1f}]"


def cross_family_tables(best: pd.DataFrame, diffs: pd.DataFrame) -> dict[str, str]:
    """``{suffix: text}``: the best settings side by side, and their paired mAP50 differences."""
    lead = {"family": best["family"],
            "best setting": [f"{KNOB_LABEL[f]} = {lab}" for f, lab in zip(best["family"], best["label"])]}
    d = diffs.to_dict("records")
    differences = pd.DataFrame({
        "comparison": [f"{x['a']} ({x['setting_a']}) − {x['b']} ({x['setting_b']})" for x in d],
        "difference": [_difference(x) for x in d], "seeds": [str(x["n_pairs"]) for x in d]})
    md = (_md(_table(best, lead)) + f"\nPaired differences of {PRIMARY} (percentage points, "
          "mean over common seeds [95% t-interval]):\n\n" + _md(differences))
    return {".md": md, ".tex": _tex(_table(best, lead, interval=False), 2),
            "_differences.csv": diffs.to_csv(index=False, float_format="%.6f")}
