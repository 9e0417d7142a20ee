"""Ablation tables (Markdown, CSV, LaTeX booktabs) from the collected runs: cells made once
(:func:`_table`), Markdown by ``DataFrame.to_markdown``, LaTeX by ``Styler.to_latex``."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from lossbench.models.imbalance import FAMILIES, SWEPT_KNOB
from lossbench.report.collect import KNOB_LABEL, METRICS
from lossbench.report.stats import CONFIDENCE, holm, paired_difference, paired_t_pvalue, t_interval

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


def _seeds(df: pd.DataFrame, family: str, order: int) -> dict[int, float]:
    g = df[(df.family == family) & (df.order == order) & (df.status == "ok")]
    return dict(zip(g["seed"], g[PRIMARY].astype(float)))


COMPARISON_COLUMNS = ["a", "setting_a", "b", "setting_b", "diff_mean", "diff_lo", "diff_hi",
                      "confidence", "p_holm", "n_pairs"]


def compare(pairs: list[tuple[str, str, dict, str, str, dict]]) -> pd.DataFrame:
    """Paired differences of ``PRIMARY`` over common seeds, corrected together (Holm).

    ``pairs``: ``(a, setting_a, seeds_a, b, setting_b, seeds_b)`` with ``seeds_*``
    mapping seed -> metric. Each interval is the paired t-interval at the level
    Holm's procedure tests that comparison at (``confidence``), so it excludes 0
    exactly when the Holm-adjusted p-value ``p_holm`` is <= 1 - CONFIDENCE.
    """
    pvalues = [paired_t_pvalue([xa[k] - xb[k] for k in sorted(set(xa) & set(xb))]) for _, _, xa, _, _, xb in pairs]
    rows = []
    for (a, sa, xa, b, sb, xb), p_adj, level in zip(pairs, *holm(pvalues, alpha=1 - CONFIDENCE)):
        level = CONFIDENCE if math.isnan(level) else level
        mean, lo, hi, n = paired_difference(xa, xb, confidence=level)
        rows.append({"a": a, "setting_a": sa, "b": b, "setting_b": sb, "diff_mean": mean, "diff_lo": lo,
                     "diff_hi": hi, "confidence": level, "p_holm": p_adj, "n_pairs": n})
    return pd.DataFrame(rows, columns=COMPARISON_COLUMNS)


def cross_family(df: pd.DataFrame, summary: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Each family's best setting, and the paired differences between them (mAP50, Holm)."""
    best = summary[summary["best"]].reset_index(drop=True)
    per = [(r["family"], r["label"], _seeds(df, r["family"], r["order"])) for _, r in best.iterrows()]
    pairs = [(*x, *y) for i, x in enumerate(per) for y in per[i + 1:]]
    return best, compare(pairs)


def within_family(df: pd.DataFrame, summary: pd.DataFrame, family: str) -> pd.DataFrame:
    """Every setting of ``family`` against the paper's default (γ 2 / α .25, 3:1, λ .5), Holm
    over the family's comparisons; empty when the grid lacks the default."""
    g = summary[summary["family"] == family].sort_values("order")
    default = FAMILIES[family]
    alpha = df[df.family == family].groupby("order")["alpha"].first()  # focal's second knob
    ref = [r for _, r in g.iterrows() if r["value"] == float(default[SWEPT_KNOB[family]])
           and (family != "focal" or alpha[r["order"]] == default["alpha"])]
    if not ref:
        return pd.DataFrame(columns=COMPARISON_COLUMNS)
    base = (family, ref[0]["label"], _seeds(df, family, ref[0]["order"]))
    return compare([(family, r["label"], _seeds(df, family, r["order"]), *base)
                    for _, r in g.iterrows() if r["order"] != ref[0]["order"]])


def _difference(d: dict[str, Any]) -> str:
    if math.isnan(d["diff_mean"]):
        return "n/a"
    if math.isnan(d["diff_lo"]):
        return f"{100 * d['diff_mean']:+.1f} (one seed, no interval)"
    return f"{100 * d['diff_mean']:+.1f} [{100 * d['diff_lo']:+.1f}, {100 * d['diff_hi']:+.1f}]"


def _verdict(d: dict[str, Any]) -> str:
    """What the corrected interval supports: which side is higher, or "not resolved"."""
    if math.isnan(d["diff_lo"]) or d["diff_lo"] <= 0 <= d["diff_hi"]:
        return "not resolved"
    return f"{d['a']} ({d['setting_a']}) higher" if d["diff_lo"] > 0 else f"{d['b']} ({d['setting_b']}) higher"


def comparison_table(diffs: pd.DataFrame) -> str:
    """Markdown of :func:`compare`'s rows: difference [Holm-corrected interval], p, verdict."""
    d = diffs.to_dict("records")
    t = pd.DataFrame({
        "comparison": [f"{x['a']} ({x['setting_a']}) − {x['b']} ({x['setting_b']})" for x in d],
        "difference [corrected interval]": [_difference(x) for x in d],
        "level": [f"{100 * x['confidence']:.1f}%" for x in d],
        "Holm p": ["n/a" if math.isnan(x["p_holm"]) else f"{x['p_holm']:.3f}" for x in d],
        "seeds": [str(x["n_pairs"]) for x in d],
        "verdict": [_verdict(x) for x in d]})
    return (f"Paired differences of {PRIMARY} in percentage points over common seeds. Each interval is "
            "a paired t-interval at the level Holm's correction tests it at (the comparisons of this "
            "table together, family-wise 95%); a difference is stated only where it excludes 0.\n\n"
            + _md(t))


def cross_family_tables(best: pd.DataFrame, diffs: pd.DataFrame) -> dict[str, str]:
    """``{suffix: text}``: the best settings side by side, and their paired mAP50 differences."""
    lead = {"family": best["family"],
            "best setting": [f"{KNOB_LABEL[f]} = {lab}" for f, lab in zip(best["family"], best["label"])]}
    md = _md(_table(best, lead)) + "\n" + comparison_table(diffs)
    return {".md": md, ".tex": _tex(_table(best, lead, interval=False), 2),
            "_differences.csv": diffs.to_csv(index=False, float_format="%.6f")}
