"""The report's numbers and tables, in percent: the primary comparisons and the per-setting summary of the pooled-seed
design (:mod:`lossbench.report.design`), the T-vs-2T calibration, the exploratory prior-off and loss-share tables, and
the paper orderings read off the primary verdicts. Cells are made once; Markdown by ``DataFrame.to_markdown``, LaTeX
(booktabs) by ``Styler.to_latex``, CSV holds the numbers.

Test-image noise: the runs' test mAP50 on ``N_BOOT`` bootstrap resamples of the test images (seed ``BOOT_SEED``, one
resample per replicate shared by every run, :func:`lossbench.report.collect.bootstrap`); a cell's ``boot_var`` is the
variance over resamples of the mean over the runs the design uses for it (:func:`boot_var`), a comparison's
``boot_diff_var`` the variance over the same resamples of the difference of its two cells' means (paired,
:func:`boot_diff_var`).
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from lossbench.families import FAMILIES, setting_key, setting_label, slug
from lossbench.report import design, stats
from lossbench.report.collect import ReportError, families_of

N_BOOT = 1000  # bootstrap replicates over test images (fixed)
BOOT_SEED = 0  # their resampling seed (fixed)
CONFIDENCE = stats.CONFIDENCE
CONVERGED_BELOW = 1.0  # points of final val mAP50 that 2T may add to T in a converged study (docs/study.md)
CAPTION = "VOC-style mAP@0.5 (area under the interpolated precision-recall curve), %"
BEST, DEFAULT = "★", "†"
DIAG_SHARES = (("diag_share_pos", "positives"), ("diag_share_hard_neg", "hard negatives"),
               ("diag_share_easy_neg", "easy negatives"))
#: what each paper says of its own default (the claim the report checks against the primary verdicts)
PAPER_CLAIMS = {
    "focal": "RetinaNet (Lin et al. 2017, Table 1b): γ 2 ranks first among the γ rows at α .25",
    "ohem": "SSD (Liu et al. 2016): hard negatives at most 3:1",
    "sse": "YOLO v1 (Redmon et al. 2016): λ_noobj .5",
}
#: the same for the later remedies (``make remedies``)
REMEDY_CLAIMS = {
    "ghm": "GHM-C (Li et al. 2019): M = 30 bins, momentum .75",
    "qfl": "GFL (Li et al. 2020): quality focal loss β 2",
    "vfl": "VarifocalNet (Zhang et al. 2021): γ 2 at α .75",
    "ce_prior": "Sampling-free (Chen et al. 2019): guided loss scaling on",
}


# --- cells -----------------------------------------------------------------------------------------------------------

def num(x: float, fmt: str = "{:.1f}") -> str:
    return "n/a" if x is None or math.isnan(x) else fmt.format(x)


def ci(mean: float, lo: float, hi: float, fmt: str = "{:.1f}") -> str:
    """``mean [lo, hi]`` (values already in %), one decimal; ``n/a`` without a mean."""
    if math.isnan(mean):
        return "n/a"
    return num(mean, fmt) + ("" if math.isnan(lo) else f" [{num(lo, fmt)}, {num(hi, fmt)}]")


def seeds_text(seeds: Sequence[int]) -> str:
    return ",".join(map(str, seeds)) or "none"


def level_text(x: float) -> str:
    return "n/a" if math.isnan(x) else f"{100 * x:.2f}".rstrip("0").rstrip(".") + "%"


def _p(x: float) -> str:
    return "n/a" if math.isnan(x) else ("< 0.001" if x < 0.001 else f"{x:.3f}")


def _md(t: pd.DataFrame, caption: str = "") -> str:
    return (f"{caption}\n\n" if caption else "") + t.to_markdown(index=False, disable_numparse=True) + "\n"


def _tex_escape(s: str) -> str:
    s = s.replace("%", r"\%").replace("_", r"\_").replace("λ\\_noobj", r"$\lambda_\mathrm{noobj}$")
    return (s.replace("γ", r"$\gamma$").replace("α", r"$\alpha$").replace("λ", r"$\lambda$")
            .replace("−", "--").replace("≥", r"$\geq$").replace("<", r"$<$").replace(BEST, r"$\star$")
            .replace(DEFAULT, r"\dag{}"))


def _tex(t: pd.DataFrame, n_lead: int, caption: str) -> str:
    """booktabs table with ``caption``; the first ``n_lead`` columns left-aligned."""
    sty = t.rename(columns=_tex_escape).style.hide(axis="index").format(_tex_escape)
    return sty.to_latex(hrules=True, caption=_tex_escape(caption),
                        column_format="l" * n_lead + "c" * (t.shape[1] - n_lead))


def texts(t: pd.DataFrame, n_lead: int, caption: str, csv: pd.DataFrame) -> dict[str, str]:
    """``{".md", ".tex", ".csv": text}``: the cells ``t`` as Markdown and LaTeX, the numbers ``csv`` as CSV."""
    csv = csv.copy()
    for c in csv.columns:  # tuples of seeds as "3,4,5"
        if csv[c].map(lambda v: isinstance(v, tuple)).any():
            csv[c] = csv[c].map(seeds_text)
    return {".md": _md(t, caption), ".tex": _tex(t, n_lead, caption),
            ".csv": csv.to_csv(index=False, float_format="%.6f")}


# --- the design's inputs ---------------------------------------------------------------------------------------------

def chosen(sel: Mapping[str, Any], role: str) -> dict[str, str]:
    """family -> the label of its val-best (``role="best"``) or paper default (``"default"``)."""
    return {f: setting_label(f, c[role]) for f, c in sel["families"].items()}


def design_runs(study: pd.DataFrame) -> pd.DataFrame:
    """The design's runs table (:data:`lossbench.report.design.COLUMNS`, in %) of the prior-on runs of ``study``,
    ``setting`` the setting's label, ``pos`` the run's column in the bootstrap matrix."""
    on = study[study["prior"]]
    return pd.DataFrame({"family": on["family"], "setting": on["label"], "seed": on["seed"],
                         "val": 100 * on["val_mAP50"], "test": 100 * on["test_mAP50"], "pos": on.index})


def boot_means(runs: pd.DataFrame, boot: np.ndarray, collapse_below: float,
               exclude: Mapping[str, tuple[str, Collection[int]]] | None = None) -> dict[tuple[str, str], np.ndarray]:
    """(family, setting) -> the cell's mean test mAP50 (points) on each bootstrap resample of the test images, over the
    runs the design uses for it: not collapsed, and for the chosen cell of a family (``exclude``: family -> (setting,
    seeds)) not its selection seeds. ``runs``: :func:`design_runs`; ``boot``: (n_boot, n_runs) test mAP50 fractions,
    one resample per row shared by every run."""
    out = {}
    for (fam, setting), g in runs.groupby(["family", "setting"], sort=False):
        held = (exclude or {}).get(fam)
        keep = g["val"] >= collapse_below
        if held and held[0] == setting:
            keep &= ~g["seed"].isin(held[1])
        used = g[keep]
        if len(used):
            out[(fam, setting)] = (100 * boot[:, used["pos"].to_numpy()]).mean(axis=1)
    return out


def boot_var(means: Mapping[tuple[str, str], np.ndarray]) -> dict[tuple[str, str], float]:
    """(family, setting) -> the test-image variance (points²) of the cell's mean (:func:`boot_means`)."""
    return {k: float(m.var(ddof=1)) for k, m in means.items()}


def boot_diff_var(means: Mapping[tuple[str, str], np.ndarray]) -> dict[tuple[str, str, str, str], float]:
    """(family A, setting A, family B, setting B) -> the test-image variance (points²) of the difference of the two
    cells' means, paired over the shared resamples: every ordered pair of cells (:func:`boot_means`)."""
    return {(*a, *b): float((ma - mb).var(ddof=1)) for a, ma in means.items() for b, mb in means.items() if a != b}


def comparison_spec(params: Mapping[str, Any]) -> dict[str, Any]:
    """``params['comparisons']``: alpha, power, collapse_below (%), detect_goal (points), primary (the spec)."""
    comp = params.get("comparisons")
    keys = ("alpha", "power", "collapse_below", "detect_goal", "primary")
    if not isinstance(comp, Mapping) or any(k not in comp for k in keys):
        raise ReportError(f"params: comparisons must give {', '.join(keys)}")
    return dict(comp)


# --- primary comparisons and per-setting summary ---------------------------------------------------------------------

def _name(family: str, setting: str, sel: Mapping[str, Any]) -> str:
    tags = [t for t, role in (("val-best", "best"), ("default", "default")) if chosen(sel, role)[family] == setting]
    return f"{family} {setting}" + (f" ({', '.join(tags)})" if tags else "")


def _inputs(study: pd.DataFrame, boot: np.ndarray, params: Mapping[str, Any], sel: Mapping[str, Any]) -> tuple:
    """``(spec, runs, val_best, selection seeds, boot_var, boot_diff_var)`` of the design for the T runs ``study``."""
    spec, runs = comparison_spec(params), design_runs(study)
    val_best, grid_seeds = chosen(sel, "best"), list(sel["seeds"])
    means = boot_means(runs, boot, spec["collapse_below"], {f: (s, grid_seeds) for f, s in val_best.items()})
    return spec, runs.drop(columns="pos"), val_best, grid_seeds, boot_var(means), boot_diff_var(means)


def primary(study: pd.DataFrame, boot: np.ndarray, params: Mapping[str, Any], sel: Mapping[str, Any]) -> pd.DataFrame:
    """:func:`lossbench.report.design.primary_comparisons` of ``params['comparisons']`` on test mAP50 (%), the val-best
    cells on their non-selection seeds, the paired test-image bootstrap variance of each difference; plus ``name_a``,
    ``name_b``."""
    spec, runs, val_best, grid_seeds, bv, bdv = _inputs(study, boot, params, sel)
    try:
        comp = design.primary_comparisons(
            runs, spec=spec["primary"], selection_seeds=grid_seeds, val_best=val_best, default=chosen(sel, "default"),
            alpha=spec["alpha"], power=spec["power"], collapse_below=spec["collapse_below"], metric="test",
            boot_var=bv, boot_diff_var=bdv)
    except ValueError as e:
        raise ReportError(f"params: comparisons.primary: {e}") from None
    comp.insert(3, "name_a", [_name(f, s, sel) for f, s in zip(comp["family_a"], comp["a"])])
    comp.insert(6, "name_b", [_name(f, s, sel) for f, s in zip(comp["family_b"], comp["b"])])
    return comp.rename(columns={"lo": "diff_lo", "hi": "diff_hi"})


def _bounded_t(values: Sequence[float]) -> tuple[float, float, float]:
    mean, _, lo, hi = stats.t_interval(list(values))
    return (mean, *stats.bounded(lo, hi, *design.METRIC_RANGE))


def summary(study: pd.DataFrame, boot: np.ndarray, params: Mapping[str, Any], sel: Mapping[str, Any]) -> pd.DataFrame:
    """Per setting (prior on, grid order): :func:`lossbench.report.design.setting_summary` of test mAP50 (%), the
    val-best on its non-selection seeds; the val mean over the grid seeds (t-interval in [0, 100]); over every run of
    the setting the cls/box loss ratio at the end of training and the clipped-step share (%); the grid-edge note."""
    spec, runs, val_best, grid_seeds, bv, _ = _inputs(study, boot, params, sel)
    out = design.setting_summary(runs, collapse_below=spec["collapse_below"], metric="test",
                                 selection_seeds=grid_seeds, val_best=val_best, boot_var=bv)
    out = out.rename(columns={"mean_all": "test_all_mean", "lo_all": "test_all_lo", "hi_all": "test_all_hi",
                              "mean_ok": "test_ok_mean", "lo_ok": "test_ok_lo", "hi_ok": "test_ok_hi"})
    extra = []
    for r in out.itertuples():
        g = study[study["prior"] & (study["family"] == r.family) & (study["label"] == r.setting)]
        choice = sel["families"][r.family]
        val = _bounded_t(100 * g.loc[g["seed"].isin(grid_seeds), "val_mAP50"])
        ratio = (g["final_loss_cls"] / g["final_loss_bbox"]).mean() if "final_loss_bbox" in g else math.nan
        extra.append({"order": int(g["order"].iloc[0]), "best": r.setting == val_best[r.family],
                      "default": r.setting == chosen(sel, "default")[r.family],
                      "val_n": int(g["seed"].isin(grid_seeds).sum()), "val_mean": val[0], "val_lo": val[1],
                      "val_hi": val[2], "cls_box_ratio": float(ratio),
                      "clip_mean": 100 * float(g["clip_fraction"].mean()),
                      "clip_max": 100 * float(g["clip_fraction"].max()),
                      "max_norm": "/".join(sorted({"none" if math.isnan(x) else f"{x:g}" for x in g["clip_max_norm"]})),
                      "grid_edge": (choice["grid_edge_note"] or "") if r.setting == val_best[r.family] else ""})
    return pd.concat([out, pd.DataFrame(extra, index=out.index)], axis=1)


# --- calibration: T against 2T ---------------------------------------------------------------------------------------

def calibration(df: pd.DataFrame, sel: Mapping[str, Any], cal_seeds: Sequence[int]) -> pd.DataFrame:
    """Per family, its paper default and val-best (one row when they are one setting): mean final val mAP50 (%) over
    the calibration seeds at T (the study's runs of the setting on those seeds) and at 2T (the calibration runs), the
    gain 2T − T, whether it is below ``CONVERGED_BELOW``, and the order of val-best and default at T and at 2T."""
    rows = []
    for fam in families_of(df):
        choice = sel["families"][fam]
        same = setting_key(fam, choice["best"]) == setting_key(fam, choice["default"])
        roles = [("val-best = paper default", choice["default"])] if same else [
            ("paper default", choice["default"]), ("val-best", choice["best"])]
        means = {}
        for role, setting in roles:
            cond = f"{fam}/{slug(fam, setting)}"
            at_t = df[(df["condition"] == cond) & df["seed"].isin(cal_seeds)]
            at_2t = df[df["condition"] == cond + "/2T"]
            lacking = sorted(set(cal_seeds) - set(at_t["seed"]))
            if lacking:
                raise ReportError(f"calibration: {fam} {setting_label(fam, setting)} has no run of T iterations for "
                                  f"calibration seed(s) {lacking} (calibration.seeds must be grid or extra seeds)")
            t, t2 = 100 * at_t["val_mAP50"].mean(), 100 * at_2t["val_mAP50"].mean()
            means[role] = (t, t2)
            rows.append({"family": fam, "role": role, "setting": setting_label(fam, setting), "condition": cond,
                         "seeds": tuple(int(s) for s in at_2t["seed"]), "val_T": t, "val_2T": t2, "gain": t2 - t,
                         "gain_below": t2 - t < CONVERGED_BELOW})
        orders = [_order(means["val-best"][i], means["paper default"][i]) if not same else "" for i in (0, 1)]
        for r in rows[-len(roles):]:
            r.update(order_T=orders[0], order_2T=orders[1], order_changes=orders[0] != orders[1])
    return pd.DataFrame(rows)


def _order(best: float, default: float) -> str:
    return "val-best > default" if best > default else "val-best < default" if best < default else "tie"


def calibration_verdict(cal: pd.DataFrame) -> str:
    """``converged`` or the shortfall in points: the largest gain minus ``CONVERGED_BELOW``; order changes named."""
    i = cal["gain"].idxmax()
    worst, who = cal.loc[i, "gain"], f"{cal.loc[i, 'family']} {cal.loc[i, 'setting']}"
    changed = sorted(set(cal.loc[cal["order_changes"], "family"]))
    order = (f"; the order of paper default and val-best changes in {', '.join(changed)}" if changed
             else "; no within-family order changes")
    if worst < CONVERGED_BELOW and not changed:
        return (f"**converged**: every gain of 2T over T is below {CONVERGED_BELOW:.1f} point (largest {worst:+.1f}, "
                f"{who}){order}.")
    return (f"**not converged**: shortfall {max(worst - CONVERGED_BELOW, 0.0):.1f} points (the largest gain of 2T "
            f"over T, {worst:+.1f} for {who}, against the criterion of less than {CONVERGED_BELOW:.1f}){order}.")


def calibration_caveat(cal: pd.DataFrame, family: str) -> str:
    """The calibration's word on ``family``'s ordering: the settings whose 2T gain misses the criterion and an order of
    val-best and paper default that changes at 2T, or ``""`` when its calibration rows meet both (or it has none)."""
    rows = cal[cal["family"] == family] if "family" in cal else cal
    changed = not rows.empty and bool(rows["order_changes"].any())
    if rows.empty or (rows["gain_below"].all() and not changed):
        return ""
    parts = [f"{r.setting} ({r.role}) gains {r.gain:+.1f} val points from T to 2T ({r.val_T:.1f} → {r.val_2T:.1f})"
             for r in rows.itertuples()]
    text = f" Not converged at T in this family: {'; '.join(parts)}"
    if changed:
        text += f"; the order of val-best and paper default changes at 2T ({rows.iloc[0]['order_T']} → " \
                f"{rows.iloc[0]['order_2T']})"
    return text + ". The verdict is a statement about the study's schedule T, not about longer training."


# --- exploratory: prior init, loss shares ----------------------------------------------------------------------------

def prior_off(study: pd.DataFrame, boot: np.ndarray, params: Mapping[str, Any], sel: Mapping[str, Any]) -> pd.DataFrame:
    """Exploratory, per family: the paper default with the prior init (on) and without it (off) over the grid seeds:
    collapses and Fisher's p, the all-run test means, and on − off over the non-collapsed runs (pooled over the two
    cells, 95%, no multiplicity correction)."""
    spec, grid_seeds, rows = comparison_spec(params), list(sel["seeds"]), []
    defaults = chosen(sel, "default")
    for fam in families_of(study):
        g = study[(study["family"] == fam) & (study["label"] == defaults[fam]) & study["seed"].isin(grid_seeds)]
        runs = design_runs(g.assign(prior=True, label=g["prior"].map({True: "prior init on",
                                                                      False: "prior init off"})))
        means = boot_means(runs, boot, spec["collapse_below"])
        bv = boot_var(means)
        c = design.primary_comparisons(runs.drop(columns="pos"), [{"within": fam}], (), {}, {fam: "prior init off"},
                                       alpha=1 - CONFIDENCE, power=spec["power"],
                                       collapse_below=spec["collapse_below"], boot_var=bv,
                                       boot_diff_var=boot_diff_var(means)).iloc[0]
        s = design.setting_summary(runs.drop(columns="pos"), spec["collapse_below"], boot_var=bv).set_index("setting")
        on, off = s.loc["prior init on"], s.loc["prior init off"]
        rows.append({"family": fam, "setting": defaults[fam], "seeds": on["seeds"],
                     "on_collapsed": on["n_collapsed"], "on_n": on["n"], "off_collapsed": off["n_collapsed"],
                     "off_n": off["n"], "p_collapse": c["p_collapse"],
                     "on_mean": on["mean_all"], "on_lo": on["lo_all"], "on_hi": on["hi_all"],
                     "off_mean": off["mean_all"], "off_lo": off["lo_all"], "off_hi": off["hi_all"],
                     "diff": c["diff"], "diff_lo": c["lo"], "diff_hi": c["hi"], "p": c["p"], "verdict": c["verdict"]})
    return pd.DataFrame(rows)


def loss_shares(study: pd.DataFrame) -> pd.DataFrame:
    """Per setting (prior on, then the prior-off runs): the share (%) of the last logged classification loss from
    positives, hard and easy negatives, and the cls/box loss ratio, means over every run of the setting."""
    rows = []
    for _, g in study.groupby("condition", sort=False):
        row = {"family": g["family"].iloc[0], "setting": g["label"].iloc[0], "prior": bool(g["prior"].iloc[0]),
               "n": len(g)}
        row.update({k.removeprefix("diag_"): 100 * float(g[f"final_{k}"].mean()) if f"final_{k}" in g else math.nan
                    for k, _ in DIAG_SHARES})
        row["cls_box_ratio"] = (float((g["final_loss_cls"] / g["final_loss_bbox"]).mean())
                                if "final_loss_bbox" in g else math.nan)
        rows.append(row)
    return pd.DataFrame(rows).sort_values("prior", ascending=False, kind="stable").reset_index(drop=True)


# --- paper orderings -------------------------------------------------------------------------------------------------

def orderings(comp: pd.DataFrame, sel: Mapping[str, Any], claims: Mapping[str, str] = PAPER_CLAIMS) -> pd.DataFrame:
    """Per family with a paper claim (``claims``): ``confirmed`` when it has primary comparisons against its paper
    default and every one reads default > other (``A < B``: the other setting is A), ``contradicted`` when one reads
    other > default (``A > B``), else ``not resolved``; ``not tested`` when params' default is not the paper's value."""
    rows = []
    for fam in [f for f in sel["families"] if f in claims]:
        within = comp[(comp["kind"] == "within") & (comp["family"] == fam)]
        above, below = within[within["verdict"] == "A > B"], within[within["verdict"] == "A < B"]
        paper = setting_key(fam, FAMILIES[fam].defaults) == setting_key(fam, sel["families"][fam]["default"])
        status = ("not tested" if not paper else "contradicted" if len(above) else
                  "confirmed" if len(within) and len(below) == len(within) else "not resolved")
        rows.append({"family": fam, "claim": claims[fam], "status": status, "comparisons": len(within),
                     "default_above": len(below), "other_above": tuple(above["a"]),
                     "unresolved": len(within) - len(below) - len(above)})
    return pd.DataFrame(rows, columns=["family", "claim", "status", "comparisons", "default_above", "other_above",
                                       "unresolved"])


# --- text tables -----------------------------------------------------------------------------------------------------

def family_tables(summ: pd.DataFrame, family: str, grid_seeds: Sequence[int], collapse_below: float) -> dict[str, str]:
    """``{suffix: text}``: one row per grid setting of ``family``."""
    g = summ[summ["family"] == family].sort_values("order")
    marks = [(BEST if b else "") + (DEFAULT if d else "") for b, d in zip(g["best"], g["default"])]
    seeds = seeds_text(grid_seeds)
    t = pd.DataFrame({
        f"setting ({FAMILIES[family].knob_label})": [f"{lab} {m}".rstrip() for lab, m in zip(g["setting"], marks)],
        "test seeds": g["seeds"].map(seeds_text),
        "collapsed": [f"{k} of {n}" for k, n in zip(g["n_collapsed"], g["n"])],
        f"val mAP50, seeds {seeds} [t]": [ci(*x) for x in zip(g["val_mean"], g["val_lo"], g["val_hi"])],
        "test mAP50, all runs [t]": [ci(*x) for x in zip(g["test_all_mean"], g["test_all_lo"], g["test_all_hi"])],
        "test mAP50, not collapsed [pooled]": [ci(*x) for x in zip(g["test_ok_mean"], g["test_ok_lo"],
                                                                     g["test_ok_hi"])],
        "cls/box loss": [num(x, "{:.2f}") for x in g["cls_box_ratio"]],
        "clipped steps (%)": [num(x) for x in g["clip_mean"]], "grid edge": g["grid_edge"]})
    caption = (f"{FAMILIES[family].label}. {CAPTION}; intervals 95% and within [0, 100]. {BEST} val-best "
               f"(highest mean val mAP50 over seeds {seeds}; its test cells use only the other seeds), {DEFAULT} paper "
               f"default. collapsed: runs whose final val mAP50 is below {collapse_below:g}%. test, all runs: every "
               "run counted, the setting's own t-interval; not collapsed: the family's pooled seed variance plus the "
               f"test-image bootstrap ({N_BOOT} replicates), as in the primary comparisons. cls/box loss: final "
               "classification over box loss, mean over every run of the setting; clipped steps: share of steps whose "
               "gradient norm was clipped, mean over those runs.")
    cols = ["family", "setting", "best", "default", "chosen", "seeds", "n", "n_collapsed", "val_n", "val_mean",
            "val_lo", "val_hi", "test_all_mean", "test_all_lo", "test_all_hi", "n_ok", "test_ok_mean", "test_ok_lo",
            "test_ok_hi", "sigma_ok", "df_ok", "cls_box_ratio", "clip_mean", "clip_max", "max_norm", "grid_edge"]
    return texts(t, 1, caption, g[cols])


def comparison_tables(comp: pd.DataFrame, alpha: float, power: float, collapse_below: float) -> dict[str, str]:
    """``{suffix: text}`` of the primary comparisons: A − B with its interval at the Holm level."""
    t = pd.DataFrame({
        "A": comp["name_a"], "B": comp["name_b"],
        "n (A / B)": [f"{a} / {b}" for a, b in zip(comp["n_a"], comp["n_b"])],
        "seeds (A / B)": [f"{seeds_text(a)} / {seeds_text(b)}" for a, b in zip(comp["seeds_a"], comp["seeds_b"])],
        "A − B (pts)": [num(d, "{:+.1f}") for d in comp["diff"]],
        "interval at Holm level": [f"[{num(lo, '{:+.1f}')}, {num(hi, '{:+.1f}')}] ({level_text(lv)})"
                                   for lo, hi, lv in zip(comp["diff_lo"], comp["diff_hi"], comp["level"])],
        "p": comp["p"].map(_p), "Holm p": comp["p_holm"].map(_p), "verdict": comp["verdict"],
        "detectable (pts)": [num(x) for x in comp["detectable"]],
        "collapsed (A / B)": [f"{ka} of {na} / {kb} of {nb}" for ka, na, kb, nb in
                              zip(comp["collapsed_a"], comp["n_a_all"], comp["collapsed_b"], comp["n_b_all"])],
        "Fisher p (Holm)": [f"{_p(p)} ({_p(ph)})" for p, ph in zip(comp["p_collapse"], comp["p_collapse_holm"])]})
    caption = ("Primary comparisons, fixed in params.yaml before the runs: test mAP50, A − B in points. One Holm "
               f"family (family-wise {100 * (1 - alpha):g}%); each interval is taken at the level Holm tests its "
               "comparison at, so it excludes 0 exactly where Holm rejects, and lies within [−100, 100]. Seed "
               "variance pooled per family (across families: Welch), plus the test-image bootstrap variance of the "
               "difference (both means on the same resampled images: paired). A val-best uses only the seeds that did "
               "not choose it. detectable: the smallest true difference "
               f"found with {100 * power:g}% power at the Bonferroni level. collapsed: final val mAP50 below "
               f"{collapse_below:g}% (left out of the means), compared by Fisher's exact test, Holm over the "
               "comparisons with a collapse.")
    return texts(t, 2, caption, comp)


def calibration_tables(cal: pd.DataFrame) -> dict[str, str]:
    t = pd.DataFrame({
        "family": cal["family"], "role": cal["role"], "setting": cal["setting"],
        "seeds": cal["seeds"].map(seeds_text), "val mAP50 at T": cal["val_T"].map(num),
        "at 2T": cal["val_2T"].map(num), "2T − T (pts)": [num(x, "{:+.1f}") for x in cal["gain"]],
        f"< {CONVERGED_BELOW:.1f}": np.where(cal["gain_below"], "yes", "no"),
        "order at T → 2T": [f"{a} → {b}" if a else "—" for a, b in zip(cal["order_T"], cal["order_2T"])],
        "order changes": [("yes" if c else "no") if a else "—" for a, c in zip(cal["order_T"], cal["order_changes"])]})
    caption = ("Calibration of the schedule: final val mAP50 (%), mean over the calibration seeds, after the study's "
               "schedule of T iterations and after a complete schedule of 2T (warm-up and decay scaled with it). "
               f"Converged when every gain 2T − T is below {CONVERGED_BELOW:.1f} point and the order of each family's "
               "val-best and paper default is the same at T and 2T.")
    return texts(t, 3, caption, cal)


def prior_off_tables(po: pd.DataFrame, collapse_below: float) -> dict[str, str]:
    t = pd.DataFrame({
        "family": po["family"], "paper default": po["setting"], "seeds": po["seeds"].map(seeds_text),
        "collapsed (on / off)": [f"{a} of {n} / {b} of {m}" for a, n, b, m in
                                 zip(po["on_collapsed"], po["on_n"], po["off_collapsed"], po["off_n"])],
        "Fisher p": po["p_collapse"].map(_p),
        "test, prior on [t]": [ci(*x) for x in zip(po["on_mean"], po["on_lo"], po["on_hi"])],
        "test, prior off [t]": [ci(*x) for x in zip(po["off_mean"], po["off_lo"], po["off_hi"])],
        "on − off, not collapsed (pts) [95%]": [ci(d, lo, hi, "{:+.1f}")
                                                for d, lo, hi in zip(po["diff"], po["diff_lo"], po["diff_hi"])],
        "A = on": po["verdict"]})
    caption = ("Exploratory, outside the Holm family: each family's paper default with the prior-probability bias init "
               f"(on) and without it (off), test mAP50 (%) over the grid seeds, collapse below {collapse_below:g}% "
               "final val mAP50. on − off over the non-collapsed runs, seed variance pooled over the two cells plus "
               "the paired test-image bootstrap, 95% without multiplicity correction; where the paper default is "
               "also the val-best these seeds chose it.")
    return texts(t, 2, caption, po)


def loss_share_tables(ls: pd.DataFrame) -> dict[str, str]:
    t = pd.DataFrame({
        "family": ls["family"],
        "setting": [s + ("" if p else " (prior off)") for s, p in zip(ls["setting"], ls["prior"])],
        "runs": ls["n"].astype(str), **{f"{lab} (%)": ls[k.removeprefix("diag_")].map(num) for k, lab in DIAG_SHARES},
        "cls/box loss": [num(x, "{:.2f}") for x in ls["cls_box_ratio"]]})
    caption = ("Exploratory: where the classification loss comes from at the end of training (the last logged "
               "iteration): its share from positive anchors, hard negatives and easy negatives (background "
               "probability > 0.9), and the classification over the box loss; means over every run of the setting.")
    return texts(t, 2, caption, ls)
