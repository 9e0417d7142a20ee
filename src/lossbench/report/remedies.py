"""Build ``reports/<profile>_remedies/``: the four later remedies (``params.yaml: remedies``) beside the three papers'
families, from the runs only.

The remedies train after the study (``make remedies``), so their report is a stage of its own and the study's report
does not wait for them. It reads every family's grid runs and val-best extra seeds (and the three papers' paper-default
extra seeds), checks both selection files against the val means of the grid runs, and writes the same kind of tables
and figures as :mod:`lossbench.report.build`: the remedies' own ablations, the seven families' val-bests and paper
defaults side by side, a second Holm family of primary comparisons (``remedies.primary``: each remedy's knob, and the
seven val-bests against each other), the loss shares of every family and the deviations from each paper.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from lossbench.families import FAMILIES, FAMILY_ORDER
from lossbench.report import figures, tables
from lossbench.report.build import (
    detectability,
    ordering_line,
    pretrain_text,
    provenance,
    regime,
    report_texts,
    write_report,
)
from lossbench.report.collect import (
    ReportError,
    _frame,
    _paired_runs,
    bootstrap,
    check_schedule,
    grid_runs,
    read_pretrain,
    seeds,
    study_families,
)
from lossbench.report.select import check_selection, select_from

#: each remedy's deviations from its paper (the loss modules' docstrings say the same, with the reasons)
DEVIATIONS = {
    "ghm": "the gradient density multiplies by the number of non-empty bins, and the moving-average counts start at 0 "
           "without bias correction (the authors' code and MMDetection's `GHMC`); normalised by the number of valid "
           "(anchor, class) entries, as the paper, not by the positives; the box loss stays the common L1 (the paper "
           "pairs GHM-C with GHM-R); π = 0.01 prior bias init as focal",
    "qfl": "the MaxIoU assigner on RetinaNet anchors instead of ATSS; the L1 box loss instead of GIoU + distribution "
           "focal loss, not weighted by the predicted score; the soft target of a positive is the IoU of its decoded "
           "box with its ground truth (no gradient); π = 0.01 prior bias init as focal",
    "vfl": "the MaxIoU assigner on RetinaNet anchors instead of ATSS; no star-shaped box refinement (the IoU target is "
           "the decoded box's, no gradient); the L1 box loss instead of GIoU; π = 0.01 prior bias init as focal",
    "ce_prior": "π is measured on the first training batch (the share of positive (anchor, class) entries), not over "
                "the training set; the class-adaptive test threshold, the method's third ingredient, is left out: "
                "every family uses the study's common test-time rule; a batch without positives has no box loss and "
                "so a guided scale of 0; the loss is normalised by the positives before the scaling (which cancels "
                "any normalisation when on)",
}
# Chen et al. 2019's claim, read off the across comparisons of `ce_prior`'s val-best with these families' val-bests
SAMPLING_FREE = ("Chen et al. 2019 (sampling-free), across families: plain cross-entropy with the prior bias and "
                 "guided scaling trains at least as well as focal loss, OHEM and GHM")
SAMPLING_FREE_RIVALS = ("focal", "ohem", "ghm")


def remedy_families(params: Mapping[str, Any]) -> list[str]:
    """``params['remedies']['families']`` in the family table's order; each a family the study does not compare."""
    listed = (params.get("remedies") or {}).get("families")
    if not isinstance(listed, list) or not listed or any(f not in FAMILY_ORDER for f in listed):
        raise ReportError(f"params: remedies.families must be a non-empty list of {list(FAMILY_ORDER)}, got {listed!r}")
    clash = sorted(set(listed) & set(study_families(params)))
    if clash:
        raise ReportError(f"params: remedies.families repeats the study's families {clash}")
    return [f for f in FAMILY_ORDER if f in listed]


def seven_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """``params`` as the design of this report: ``families`` every family of the study and of the remedies, the
    primary comparisons ``remedies.primary`` (with ``comparisons``' alpha, power, collapse and detection goal)."""
    primary = (params.get("remedies") or {}).get("primary")
    if not isinstance(primary, list) or not primary:
        raise ReportError("params: remedies.primary must list the remedies' primary comparisons "
                          "(e.g. [{within: ghm}, ..., {across: val_best}])")
    families = study_families(params) + remedy_families(params)
    comp = {**tables.comparison_spec(params), "primary": primary}
    return {**params, "families": [f for f in FAMILY_ORDER if f in families], "comparisons": comp}


def selection_of(runs: str | Path, params: Mapping[str, Any], selection: str | Path,
                 selection_remedies: str | Path) -> dict[str, Any]:
    """Every family's choice, recomputed from the grid runs and checked against the study's selection file and the
    remedies' (each family's val-best is chosen among its own settings: one file per `lossbench select`)."""
    study, remedies = dict(params), {**params, "families": remedy_families(params)}
    chosen: dict[str, Any] = {}
    for p, path in ((study, selection), (remedies, selection_remedies)):
        sel = select_from(grid_runs(runs, p), p)
        check_selection(sel, path)
        chosen.update(sel["families"])
    return {"metric": sel["metric"], "seeds": sel["seeds"],
            "families": {f: chosen[f] for f in FAMILY_ORDER if f in chosen}}


def collect_seven(runs: str | Path, params: Mapping[str, Any], sel: Mapping[str, Any]) -> pd.DataFrame:
    """The T runs of this report: every family's grid runs, the val-best's extra seeds of every family and the paper
    default's of the study's families (the remedies train no extra seeds of their default)."""
    root, p7 = Path(runs), seven_params(params)
    best = {f: c["best"] for f, c in sel["families"].items()}
    rows = grid_runs(root, p7).to_dict("records")
    rows += _paired_runs(root, p7, best, "extra", "", seeds(params, "extra_seeds"),
                         default_families=study_families(params))
    return _frame(rows, root, p7)


def cross_family_tables(summ: pd.DataFrame, grid_seeds: Sequence[int], collapse_below: float) -> dict[str, str]:
    """``{suffix: text}``: each family's val-best and paper default (one row when they coincide), family order."""
    g = summ[summ["best"] | summ["default"]]
    role = [" = ".join(t for t, on in (("val-best", b), ("paper default", d)) if on)
            for b, d in zip(g["best"], g["default"])]
    t = pd.DataFrame({
        "family": g["family"].map(lambda f: FAMILIES[f].label), "role": role, "setting": g["setting"],
        "test seeds": g["seeds"].map(tables.seeds_text),
        "collapsed": [f"{k} of {n}" for k, n in zip(g["n_collapsed"], g["n"])],
        f"val mAP50, seeds {tables.seeds_text(grid_seeds)} [t]": [tables.ci(*x) for x in
                                                                 zip(g["val_mean"], g["val_lo"], g["val_hi"])],
        "test mAP50, all runs [t]": [tables.ci(*x) for x in
                                     zip(g["test_all_mean"], g["test_all_lo"], g["test_all_hi"])],
        "test mAP50, not collapsed [pooled]": [tables.ci(*x) for x in
                                               zip(g["test_ok_mean"], g["test_ok_lo"], g["test_ok_hi"])],
        "cls/box loss": [tables.num(x, "{:.2f}") for x in g["cls_box_ratio"]]})
    caption = (f"Every family's val-best and paper default. {tables.CAPTION}; intervals 95% and within [0, 100]. The "
               f"val-best's test cells use only the seeds that did not choose it; a paper default that is not the "
               f"val-best uses every seed it has (the remedies train extra seeds of their val-best only). collapsed: "
               f"final val mAP50 below {collapse_below:g}%. not collapsed: the family's pooled seed variance plus the "
               f"test-image bootstrap ({tables.N_BOOT} replicates).")
    cols = ["family", "setting", "best", "default", "seeds", "n", "n_collapsed", "val_mean", "val_lo", "val_hi",
            "test_all_mean", "test_all_lo", "test_all_hi", "n_ok", "test_ok_mean", "test_ok_lo", "test_ok_hi",
            "sigma_ok", "df_ok", "cls_box_ratio"]
    return tables.texts(t, 3, caption, g[cols])


def sampling_free_line(comp: pd.DataFrame) -> str:
    """Chen et al.'s claim against the primary verdicts of ``ce_prior``'s val-best with focal's, OHEM's and GHM's:
    *contradicted* when one of them is resolved above it, *ce_prior above* where it is resolved above all, else *not
    resolved* (a difference that is not resolved is no evidence of "as well": the detectable difference says how
    large a gap could have gone unseen)."""
    pairs = comp[(comp["kind"] == "across")
                 & (comp[["family_a", "family_b"]].isin(["ce_prior"]).any(axis=1))
                 & (comp[["family_a", "family_b"]].isin(SAMPLING_FREE_RIVALS).any(axis=1))]
    if pairs.empty:
        return f"- {SAMPLING_FREE}: **not tested** (no primary comparison of their val-bests)."
    words, below, above = [], 0, 0
    for r in pairs.itertuples():
        rival = r.family_b if r.family_a == "ce_prior" else r.family_a
        sign = 1 if r.family_a == "ce_prior" else -1  # ce_prior − rival
        d = sign * r.diff
        resolved = r.verdict in ("A > B", "A < B")
        if resolved and d < 0:
            below += 1
        elif resolved and d > 0:
            above += 1
        lo, hi = sorted((sign * r.diff_lo, sign * r.diff_hi))
        words.append(f"ce_prior − {rival} {tables.num(d, '{:+.1f}')} [{tables.num(lo, '{:+.1f}')}, "
                     f"{tables.num(hi, '{:+.1f}')}], " + ("resolved" if resolved else
                                                         f"not resolved, detectable {tables.num(r.detectable)}"))
    status = ("contradicted" if below else "ce_prior above every one" if above == len(pairs) else "not resolved")
    return f"- {SAMPLING_FREE}: **{status}** (test mAP50, points: {'; '.join(words)})."


def build_remedies_report(runs: str | Path, params: dict[str, Any], profile: str, out: str | Path,
                          selection: str | Path, selection_remedies: str | Path) -> dict[str, Any]:
    """Write the remedies' report into ``out`` (atomically, as a whole); unchanged runs give byte-identical files."""
    p7 = seven_params(params)
    sel = selection_of(runs, params, selection, selection_remedies)
    df = collect_seven(runs, params, sel)
    t_iters = check_schedule(df, params)
    boot = bootstrap(df, tables.N_BOOT, tables.BOOT_SEED)
    spec, grid_seeds, rem = p7["comparisons"], seeds(params), remedy_families(params)
    res = {"selection": sel, "runs": df, "remedies": rem, "T": t_iters, "pretrain": read_pretrain(runs),
           "comparisons": tables.primary(df, boot, p7, sel), "summary": tables.summary(df, boot, p7, sel),
           "loss_shares": tables.loss_shares(df)}
    res["orderings"] = tables.orderings(res["comparisons"], sel, tables.REMEDY_CLAIMS)
    res["provenance"] = provenance(df, profile, {"n_boot": tables.N_BOOT, "seed": tables.BOOT_SEED},
                                   (Path(runs) / "pretrain" / "metrics.json",))
    text = report_texts(res["summary"], rem, grid_seeds, spec["collapse_below"], (
        ("cross_family", cross_family_tables(res["summary"], grid_seeds, spec["collapse_below"])),
        ("comparisons", tables.comparison_tables(res["comparisons"], spec["alpha"], spec["power"],
                                                 spec["collapse_below"])),
        ("loss_shares", tables.loss_share_tables(res["loss_shares"]))))

    def draw(figs: Path) -> None:
        figures.ablation(res["summary"][res["summary"]["family"].isin(rem)], figs, grid_seeds)
        figures.cross_family(df, res["summary"], figs)

    write_report(out, text, df, res["provenance"], draw, lambda: readme(res, text, p7, profile))
    return res


def readme(res: dict[str, Any], text: dict[str, str], p7: dict[str, Any], profile: str) -> str:
    """The remedies report's prose, every number from the tables it cites."""
    sel, comp, prov = res["selection"], res["comparisons"], res["provenance"]
    spec, rem = p7["comparisons"], res["remedies"]
    grid, extra = tables.seeds_text(sel["seeds"]), tables.seeds_text(seeds(p7, "extra_seeds"))
    m = int(comp["p"].notna().sum())
    words = "; ".join(f"every other {x['within']} setting against its paper default" if "within" in x
                      else f"the {x['across'].replace('_', '-')}s of all {len(sel['families'])} families, every pair"
                      for x in spec["primary"])
    under = comp[~(comp["detectable"] <= spec["detect_goal"])]
    parts = [f"# lossbench report — later remedies, profile `{profile}`", "",
             "Generated by `lossbench remedies-report` (stage `report_remedies`) from the runs' `metrics.json` and "
             "test records; do not edit by hand. The three papers' families are reported in full in "
             f"[`reports/{profile}/`](../{profile}/README.md); here they stand beside the four later remedies "
             f"({', '.join(FAMILIES[f].label for f in rem)}), trained in the same head under the same controls.", "",
             "## How the numbers are made", "",
             f"- **Same design as the study.** Every grid setting: seeds {grid}, T = {res['T']:,} iterations; each "
             f"family's val-best (highest mean val mAP50 over seeds {grid}, chosen among its own settings; ties: "
             f"the paper default, then grid order) also seeds {extra}, which alone give its test cells; the three "
             f"papers' defaults also seeds {extra}. Regime: {regime(profile, res['T'], res['pretrain'])}.",
             f"- **Primary comparisons of the remedies**, fixed in `params.yaml: remedies.primary` before their runs: "
             f"{words}. A Holm family of its own ({m} tests, family-wise {100 * (1 - spec['alpha']):g}%), apart "
             "from the study's; the comparisons among the three papers' val-bests repeat the study's on the same "
             "runs. Intervals at each comparison's Holm level, seed variance pooled per family (Welch across "
             "families) plus the paired test-image bootstrap of the difference, within [−100, 100]; *not resolved* "
             "where an interval crosses 0.",
             f"- **Power.** {len(comp) - len(under)} of {len(comp)} comparisons detect {spec['detect_goal']:g} points "
             f"at {100 * spec['power']:g}% power; the other {len(under)} are underpowered for that goal, and where "
             "they are not resolved they are exploratory evidence only (their detectable difference is in the table).",
             f"- **Collapse**: final val mAP50 below {spec['collapse_below']:g}%, counted and compared by Fisher's "
             "exact test, left out of the means.", "",
             "## Every family's val-best and paper default", "", text["cross_family.md"],
             "![cross-family](figures/cross_family_mAP50.png)", "",
             "## Primary comparisons", "", text["comparisons.md"],
             f"Detectable differences against the goal of {spec['detect_goal']:g} points:", "",
             *detectability(comp, spec["detect_goal"]), "",
             "## The papers' claims", "",
             "Each remedy's paper default against its other settings, read off the primary verdicts as in the "
             "study's report (*confirmed* when every comparison has the default above, *contradicted* when another "
             "setting is above it, otherwise *not resolved*); and the sampling-free paper's cross-family claim.", ""]
    where = regime(profile, res["T"], res["pretrain"])
    parts += [ordering_line(r, sel, where) for r in res["orderings"].itertuples()]
    parts += [sampling_free_line(comp), "", "## Per-setting summary of the remedies", ""]
    for fam in rem:
        parts += [f"### {FAMILIES[fam].label}", "", text[f"{fam}.md"]]
    parts += ["![ablations](figures/ablation_mAP50.png)", "",
              "## Loss shares (exploratory)", "", text["loss_shares.md"],
              "## Deviations from the papers", "",
              "Held fixed for every family, as in the study: the architecture, the `MaxIoUAssigner`, the L1 box loss, "
              "the schedule, the pretrained backbone, the clipping policy and the seeds; every sigmoid family starts "
              "its class biases at the prior π = 0.01 unless stated. Per remedy:", ""]
    parts += [f"- **{FAMILIES[f].label}** (`{f}`): {DEVIATIONS[f]}." for f in rem]
    dirty = prov["runs_not_from_a_clean_tree"]
    if dirty:
        parts += ["", f"**{len(dirty)} of {prov['runs']} run(s) were not produced from a clean tree**: "
                  + ", ".join(dirty)]
    parts += ["", "## Pretrained backbone", "", "Pretrained backbone: " + pretrain_text(res["pretrain"]), "",
              "## Provenance", "", "```json", json.dumps(prov, indent=2), "```", "",
              "Files: `tables/*.{md,csv,tex}` (values in %), `figures/*.{png,pdf}`, `runs.csv`, `provenance.json`.", ""]
    return "\n".join(parts)

