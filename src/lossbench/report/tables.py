"""Ablation tables (Markdown, CSV, LaTeX booktabs) from the collected runs."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from lossbench.report.collect import FAMILY_ORDER, KNOB_LABEL, METRICS
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
    for family, g in out.groupby("family", sort=False):
        complete = g[g["n"] == g["n_expected"]]
        pool = complete if len(complete) else g[g["n"] > 0]
        if len(pool) and pool[f"{PRIMARY}_mean"].notna().any():
            out.loc[pool[f"{PRIMARY}_mean"].idxmax(), "best"] = True
    return out


def _cell(r: pd.Series, m: str, pct: bool = True) -> str:
    mean, std = r[f"{m}_mean"], r[f"{m}_std"]
    if math.isnan(mean):  # no run, or a metric the data cannot give (e.g. APl on small images)
        return "missing" if r["n"] == 0 else "n/a"
    k = 100.0 if pct else 1.0
    if math.isnan(std):
        return f"{k * mean:.1f} (n=1)"
    return f"{k * mean:.1f} ± {k * std:.1f} [{k * r[f'{m}_lo']:.1f}, {k * r[f'{m}_hi']:.1f}]"


def _seeds_note(r: pd.Series) -> str:
    return "" if r["n"] == r["n_expected"] else f"{r['n']}/{r['n_expected']} seeds"


def family_table_md(summary: pd.DataFrame, family: str) -> str:
    """Markdown table: knob values x metrics, mean ± std [95% CI] in %, best row in bold."""
    g = summary[summary["family"] == family].sort_values("order")
    head = [KNOB_LABEL[family], "seeds"] + list(METRICS)
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for _, r in g.iterrows():
        cells = [r["label"], f"{r['n']}/{r['n_expected']}"] + [_cell(r, m) for m in METRICS]
        if r["best"]:
            cells = [f"**{c}**" for c in cells]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _tex_escape(s: str) -> str:
    return (s.replace("±", r"$\pm$").replace("γ", r"$\gamma$").replace("α", r"$\alpha$")
            .replace("λ_noobj", r"$\lambda_\mathrm{noobj}$").replace("%", r"\%"))


def family_table_tex(summary: pd.DataFrame, family: str) -> str:
    """LaTeX (booktabs) version of :func:`family_table_md`."""
    g = summary[summary["family"] == family].sort_values("order")
    cols = [KNOB_LABEL[family], "seeds"] + list(METRICS)
    out = [r"\begin{tabular}{l" + "c" * (len(cols) - 1) + "}", r"\toprule",
           " & ".join(_tex_escape(c) for c in cols) + r" \\", r"\midrule"]
    for _, r in g.iterrows():
        cells = [r["label"], f"{r['n']}/{r['n_expected']}"] + [
            (f"{100 * r[f'{m}_mean']:.1f} ± {100 * r[f'{m}_std']:.1f}"
             if not math.isnan(r[f"{m}_std"]) else
             (("missing" if r["n"] == 0 else "n/a") if math.isnan(r[f"{m}_mean"])
              else f"{100 * r[f'{m}_mean']:.1f}"))
            for m in METRICS]
        cells = [_tex_escape(c) for c in cells]
        if r["best"]:
            cells = [r"\textbf{" + c + "}" for c in cells]
        out.append(" & ".join(cells) + r" \\")
    out += [r"\bottomrule", r"\end{tabular}", ""]
    return "\n".join(out)


def family_table_csv(summary: pd.DataFrame, family: str) -> str:
    g = summary[summary["family"] == family].sort_values("order")
    cols = ["label", "value", "n", "n_expected", "missing_seeds", "best"] + [
        f"{m}_{s}" for m in METRICS for s in ("mean", "std", "lo", "hi")]
    return g[cols].rename(columns={"label": KNOB_LABEL[family]}).to_csv(index=False, float_format="%.6f")


def cross_family(df: pd.DataFrame, summary: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Each family's best setting, and the paired differences between them (mAP50)."""
    best = summary[summary["best"]].set_index("family").reindex(
        [f for f in FAMILY_ORDER if f in set(summary["family"])])
    per_seed = {}
    for family, r in best.iterrows():
        if pd.isna(r.get("order")):
            continue
        g = df[(df.family == family) & (df.order == r["order"]) & (df.status == "ok")]
        per_seed[family] = dict(zip(g["seed"], g[PRIMARY].astype(float)))
    diffs = []
    fams = list(per_seed)
    for i, a in enumerate(fams):
        for b in fams[i + 1:]:
            mean, lo, hi, n = paired_difference(per_seed[a], per_seed[b])
            diffs.append({"a": a, "setting_a": best.loc[a, "label"], "b": b,
                          "setting_b": best.loc[b, "label"], "diff_mean": mean, "diff_lo": lo,
                          "diff_hi": hi, "n_pairs": n})
    return best.reset_index(), pd.DataFrame(diffs)


def cross_family_md(best: pd.DataFrame, diffs: pd.DataFrame) -> str:
    lines = ["| family | best setting | seeds | " + " | ".join(METRICS) + " |",
             "|" + "---|" * (3 + len(METRICS))]
    for _, r in best.iterrows():
        cells = [r["family"], f"{KNOB_LABEL[r['family']]} = {r['label']}",
                 f"{r['n']}/{r['n_expected']}"] + [_cell(r, m) for m in METRICS]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", f"Paired differences of {PRIMARY} (percentage points, mean over common seeds "
              "[95% t-interval]):", "", "| comparison | difference | seeds |", "|---|---|---|"]
    for _, d in diffs.iterrows():
        if math.isnan(d["diff_mean"]):
            cell = "n/a"
        elif math.isnan(d["diff_lo"]):
            cell = f"{100 * d['diff_mean']:+.1f} (one seed, no interval)"
        else:
            cell = f"{100 * d['diff_mean']:+.1f} [{100 * d['diff_lo']:+.1f}, {100 * d['diff_hi']:+.1f}]"
        lines.append(f"| {d['a']} ({d['setting_a']}) − {d['b']} ({d['setting_b']}) | {cell} | "
                     f"{d['n_pairs']} |")
    return "\n".join(lines) + "\n"


def cross_family_tex(best: pd.DataFrame, diffs: pd.DataFrame) -> str:
    out = [r"\begin{tabular}{llc" + "c" * len(METRICS) + "}", r"\toprule",
           "family & best setting & seeds & " + " & ".join(METRICS) + r" \\", r"\midrule"]
    for _, r in best.iterrows():
        cells = [r["family"], f"{KNOB_LABEL[r['family']]} = {r['label']}",
                 f"{r['n']}/{r['n_expected']}"] + [
            f"{100 * r[f'{m}_mean']:.1f} ± {100 * r[f'{m}_std']:.1f}"
            if not math.isnan(r[f"{m}_std"]) else
            ("n/a" if math.isnan(r[f"{m}_mean"]) else f"{100 * r[f'{m}_mean']:.1f}")
            for m in METRICS]
        out.append(" & ".join(_tex_escape(c) for c in cells) + r" \\")
    out += [r"\bottomrule", r"\end{tabular}", ""]
    return "\n".join(out)
