"""Build ``reports/<profile>/``: tables, figures, README and provenance, from the runs only."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pandas as pd

from lossbench.families import FAMILIES
from lossbench.report import figures, tables
from lossbench.report.collect import ReportError, bootstrap, collect, families_of, grid_runs, seeds, study_families
from lossbench.report.select import check_selection, select_from
from lossbench.utils import atomic_path, read_json

# Published numbers, quoted as reported (theirs, not ours).
PUBLISHED = """\
Published numbers on real data, for orientation only: they are **theirs** (different data,
backbones and schedules), not produced by this repository.

| source | setting | result |
|---|---|---|
| Lin et al. 2017 (RetinaNet), Table 1b, COCO minival, R-50 | γ = 0, α = .75 | 31.1 AP |
| 〃 | γ = 0.5, α = .5 | 32.9 AP |
| 〃 | γ = 1, α = .25 | 33.7 AP |
| 〃 | γ = 2, α = .25 | 34.0 AP |
| 〃 | γ = 5, α = .25 | 32.2 AP |
| 〃 Table 1d, R-101 | best OHEM vs focal loss | 32.8 vs 36.0 AP |
| 〃 Table 1d, R-101 | OHEM 1:3, batch 128 / 256 / 512 | 31.1 / 28.3 / 24.0 AP |
| gurkirt/RetinaNet.pytorch.1.x, COCO, R-50, single runs | focal / SSD-style mining 3:1 / BCE "YOLO" | 34.3 / 34.7 / 33.3 AP |
| Chen et al. 2019 (sampling-free), COCO / VOC07 | plain CE with prior init vs focal | 36.8 vs 36.4 AP / 80.1 vs 79.3 mAP |

No public number exists for YOLO v1's sum-squared error inside a RetinaNet; that row is this
study's own. Repeated MMDetection runs vary by about 0.5 mAP (std) on VOC0712 and 0.1–0.3 AP
on COCO, so single-run differences of that size mean nothing.
"""

CONTROLLED = """\
Held fixed across families (the confounds Chen et al. 2019 point at): the architecture
(RetinaNet: backbone, FPN, two towers, 9 anchors per location), the `MaxIoUAssigner`
(positive IoU ≥ 0.5, negative < 0.4, ignored in between), the L1 box loss, the normalisation of
every classification loss by the number of positive anchors, the schedule, the augmentation
and the seeds. Only the classification output layer and its loss change.

Prior-probability bias init (π = 0.01), per family: **focal**: every sigmoid class logit starts
at log(π / (1 − π)); **ohem**: the background logit of the softmax starts so that
P(background) = 1 − π (the class logits at 0); **sse**: the objectness logit only (σ = π), the
class logits start at 0. The prior-off runs start every classification bias at 0.

YOLO v1's loss inside a RetinaNet differs from the paper's on purpose: the box loss is the
same L1 loss for every family (no λ_coord, no √w/√h); outputs are sigmoids; every anchor with
IoU ≥ 0.5 with a ground truth is responsible for it (not one grid cell and one box predictor);
the class terms are taken on positive anchors only; and the objectness target of a positive
is {obj_target}, 0 for a negative, whose term is scaled by λ_noobj.
"""
OBJ_TARGET = {"iou": "the IoU of its decoded box with its ground truth (YOLO v1's confidence "
                     "target; `obj_target: iou`)",
              "one": "1 (`obj_target: one`)"}


def _obj_target(df: pd.DataFrame) -> str:
    """The sse runs' objectness target in words; an error when runs disagree."""
    found = sorted(set(df.loc[df.family == "sse", "obj_target"].dropna()))
    if len(found) != 1 or found[0] not in OBJ_TARGET:
        raise ReportError(f"sse runs: expected one objectness target of {sorted(OBJ_TARGET)} in their "
                          f"metrics.json imbalance.obj_target, found {found}")
    return OBJ_TARGET[found[0]]


def _machine(env: dict[str, Any]) -> str:
    """``<CPU model> (<threads> threads, <torch CPU capability>)[ + GPUs]`` from an env.json."""
    cpu = env.get("cpu_model") or env.get("cpu") or "unknown CPU"
    detail = ", ".join(str(x) for x in (f"{env.get('cpu_threads')} threads", env.get("cpu_capability")) if x)
    gpus = [v for k, v in env.items() if k.startswith("GPU ")] + ([env["gpu"]] if env.get("gpu") else [])
    return f"{cpu} ({detail})" + "".join(f" + {g}" for g in gpus)


def provenance(df: pd.DataFrame, label: str, bootstrap_spec: dict[str, int]) -> dict[str, Any]:
    """Where the numbers come from, read from the runs only (nothing of the build itself)."""
    envs = {r.run: read_json(Path(r.run_dir) / "env.json") for r in df.itertuples()
            if (Path(r.run_dir) / "env.json").is_file()}
    first = next(iter(envs.values()), {})
    digest = hashlib.sha256()
    for r in df.itertuples():
        digest.update((Path(r.run_dir) / "metrics.json").read_bytes())
        digest.update(Path(r.records).read_bytes())
    return {
        "profile": label, "runs": len(df), "inputs_sha256": digest.hexdigest()[:16], "bootstrap": bootstrap_spec,
        "git_revisions_of_runs": sorted({e.get("git_revision") or "unknown" for e in envs.values()}),
        "runs_not_from_a_clean_tree": [r for r, e in envs.items()
                                       if str(e.get("git_revision")).endswith("-dirty")],
        "machines_of_runs": sorted({_machine(e) for e in envs.values()}), "packages": first.get("packages", {}),
        "python": (first.get("python") or first.get("Python") or "unknown").split()[0],
        "sum_of_run_wall_times_s": round(float(df.get("wall_time_s", pd.Series(dtype=float)).sum()), 1)}


#: the profile whose val-bests the imbalance sweep trains (dvc.yaml: train_sweep reads runs/synth/selection.json)
SWEEP_BASE_PROFILE = "synth"
#: the sweep runs after this report (`make sweep`: it needs the selection), so this report shows its figure and points
#: to its tables rather than copying numbers that would go stale
SWEEP_SECTION = [
    "## Imbalance sweep", "",
    "Each family's paper default and its val-best from this study, trained again at each point of the sweep "
    "(`params.yaml: sweep.profiles`: {points}): synth data whose share of positive anchors differs at constant "
    "compute. It runs after this report (`make sweep`, stage `report_sweep`); its report, with the table of test mAP50 "
    "against the measured positive share, the paired comparisons and the training conditions per point: "
    "[`reports/sweep/`](../sweep/README.md) (table: [`tables/sweep.md`](../sweep/tables/sweep.md)).", "",
    "![sweep](../sweep/figures/sweep_mAP50_vs_positive_share.png)", ""]


def build_report(runs: str | Path, params: dict[str, Any], profile: str, out: str | Path,
                 selection: str | Path) -> dict[str, Any]:
    """Write every table and figure into ``out`` (atomically, as a whole).

    The selection is recomputed from the grid runs' val mAP50 and must agree with the file ``selection`` (which the
    extra runs trained from). The output depends on the runs only: unchanged runs give byte-identical files.
    """
    sel = select_from(grid_runs(runs, params), params)
    check_selection(sel, selection)
    families = study_families(params)
    df = collect(runs, params, {f: sel["families"][f]["best"] for f in families})
    boot = bootstrap(df, tables.N_BOOT, tables.BOOT_SEED)
    grid_seeds = seeds(params)
    summary = tables.summarise(df, boot, sel)
    comp = tables.comparisons(df, boot, summary, grid_seeds)
    cal = tables.calibration(df, summary)
    prov = provenance(df, profile, {"n_boot": tables.N_BOOT, "seed": tables.BOOT_SEED})
    text = {f"{fam}{sfx}": t for fam in families
            for sfx, t in tables.family_tables(summary, fam, grid_seeds).items()}
    for name, parts in (("comparisons", tables.comparison_tables(comp)),
                        ("prior_off", tables.prior_off_tables(df, boot, summary, comp, grid_seeds)),
                        ("calibration", tables.calibration_tables(cal)), ("clipping", tables.clipping_tables(summary))):
        text.update({f"{name}{sfx}": t for sfx, t in parts.items()})
    with atomic_path(out) as tmp:
        (tmp / "tables").mkdir(parents=True)
        for name, t in text.items():
            (tmp / "tables" / name).write_text(t)
        df.drop(columns=["run_dir", "records", "setting", "val_curve"]).to_csv(
            tmp / "runs.csv", index=False, float_format="%.6f")
        figs = tmp / "figures"
        best = summary[summary.prior & summary.best]
        written = [*figures.ablation(summary, figs, grid_seeds), *figures.cross_family(df, summary, figs),
                   *figures.calibration(df, summary, figs, tables.TARGET_VAL),
                   *figures.training_curves(df, best, figs), *figures.loss_shares(df, best, figs),
                   *figures.focal_figure(figs)]
        (tmp / "provenance.json").write_text(json.dumps(prov, indent=2) + "\n")
        (tmp / "README.md").write_text(readme(df, sel, summary, comp, cal, text, prov,
                                              {p.stem for p in written}, params))
    return {"selection": sel, "runs": df, "summary": summary, "comparisons": comp,
            "calibration": cal, "provenance": prov}


def _ci(mean: float, lo: float, hi: float) -> str:
    return f"{100 * mean:.1f}% [{100 * lo:.1f}, {100 * hi:.1f}]"


def comparison_sentence(r: pd.Series) -> str:
    """One comparison row in words, its verdict verbatim from the table."""
    return (f"{r['A']} vs {r['B']} ({r['group']}, {r['n']} seeds): A − B = {100 * r['diff']:+.1f} "
            f"points [{100 * r['lo']:+.1f}, {100 * r['hi']:+.1f}] at {100 * r['level']:.2f}%, "
            f"Holm p {r['p_holm']:.3f}: **{r['verdict']}**")


def _clip_policy(summary: pd.DataFrame) -> str:
    norms = sorted({n for x in summary["max_norm"] for n in x.split("/")})
    if norms == ["none"]:
        return "No run clipped its gradients (`clip.max_norm` null in every run)."
    return (f"Gradient clipping: before each optimiser step the total gradient norm is scaled down "
            f"to `max_norm` when it exceeds it (values in these runs: {', '.join(norms)}). The "
            f"share of clipped steps, mean {100 * summary['clip_mean'].mean():.1f}% and at most "
            f"{100 * summary['clip_max'].max():.1f}% over every run, is in the table below.")


def readme(df: pd.DataFrame, sel: dict[str, Any], summary: pd.DataFrame, comp: pd.DataFrame, cal: pd.DataFrame,
           text: dict[str, str], prov: dict[str, Any], figs: set[str], params: dict[str, Any]) -> str:
    """The report's prose, every number from the tables it cites."""
    grid_seeds = ",".join(map(str, sel["seeds"]))
    extra = ",".join(map(str, seeds(params, "extra_seeds")))
    n_boot, boot_seed = prov["bootstrap"]["n_boot"], prov["bootstrap"]["seed"]
    parts = [f"# lossbench report — profile `{prov['profile']}`", "",
             "Generated by `lossbench report` (stage `report`) from the runs' `metrics.json` and "
             "test records; do not edit by hand.", "", "## How the numbers are made", "",
             "- **Chosen on val, reported on test.** Each family's val-best setting is the grid setting with the "
             f"highest mean val mAP50 over seeds {grid_seeds}, which every grid setting has (ties: the paper default, "
             "then grid order); the test split never chooses. The selection is recomputed here and agrees with the "
             "selection file the extra runs were trained from.",
             f"- **Seeds.** Every grid setting: seeds {grid_seeds}. Each family's paper default "
             f"and val-best: also seeds {extra}. The prior-off runs: seeds {grid_seeds}.",
             "- **Metric.** mAP50 is VOC-style AP at IoU 0.5, the area under the interpolated precision–recall curve "
             "(MMDetection's `eval_map`, area mode), mean over classes, in %; test AP is COCO's AP@[.5:.95].",
             f"- **Intervals (95%).** val: Student-t over seeds. test: mean over seeds ± "
             f"t(n−1) · se with se² = s²/n (seed noise) + the variance over {n_boot} bootstrap "
             f"resamples of the test images of the seed mean (image noise); resampling seed "
             f"{boot_seed}, fixed; one resample per replicate is shared by every run, and the "
             "bootstrap is recomputed from the records at every build.",
             f"- **Comparisons.** Paired by seed; the {len(comp)} comparisons below (each grid setting against its "
             "family's paper default, val-best against val-best and paper default against paper default across "
             "families, prior init on against off) form one Holm family at a family-wise 95%. Each interval is taken "
             "at the level Holm tests its comparison at, so it excludes 0 exactly when Holm rejects; a difference is "
             "claimed only then, otherwise it is *not resolved*.", "", ""]
    if df["test_no_detections"].any():
        parts += ["Runs with no detection above the score threshold on test (COCO AP 0 by "
                  "definition): " + ", ".join(df.loc[df["test_no_detections"], "run"]), ""]
    parts += ["## Best setting of each family", ""]
    for fam in families_of(summary):
        choice = sel["families"][fam]
        rows = summary[(summary.family == fam) & summary.prior]
        b, d = rows[rows.best].iloc[0], rows[rows.default].iloc[0]
        line = (f"- **{FAMILIES[fam].label}**: val-best {b['label']} (mean val mAP50 "
                f"{100 * b['val_mean']:.1f}% over seeds {grid_seeds}); test mAP50 "
                f"{_ci(b['test_mean'], b['test_lo'], b['test_hi'])} over {b['n']} seeds.")
        if b["condition"] == d["condition"]:
            line += " It is the paper default."
        else:
            line += (f" Paper default {d['label']}: test mAP50 "
                     f"{_ci(d['test_mean'], d['test_lo'], d['test_hi'])} over {d['n']} seeds.")
        if choice["best_on_grid_edge"]:
            line += (f" **On the grid's edge**: {choice['grid_edge_note']}; the optimum may lie outside the grid.")
        parts.append(line)
    parts += ["", "![cross-family](figures/cross_family_mAP50.png)", "",
              "## Comparisons", "", "In words (verdicts verbatim from the table):", ""]
    parts += [f"- {comparison_sentence(r)}" for _, r in comp.iterrows()]
    parts += ["", text["comparisons.md"], "## The grids", ""]
    for fam in families_of(summary):
        parts += [f"### {FAMILIES[fam].label}", "", text[f"{fam}.md"]]
    parts += ["![ablations](figures/ablation_mAP50.png)", "", "## Prior-probability init", "", text["prior_off.md"],
              "## Calibration", "", "![calibration](figures/calibration_val_mAP50.png)", "", text["calibration.md"]]
    parts += [f"- {r['family']} {r['label']} ({r['role']}): the last 25% of iterations gained "
              f"{100 * r['gain_mean']:+.1f} points of val mAP50 (plateau: {r['plateau']}); final "
              f"val mAP50 {100 * r['final_mean']:.1f}% (target {100 * tables.TARGET_VAL:g}%: "
              f"{'met' if r['target_met'] == 'yes' else 'not met'})." for _, r in cal.iterrows()]
    parts += ["", "## Clipping", "", _clip_policy(summary), "", text["clipping.md"]]
    if {"training_curves", "loss_shares"} & figs:
        parts += ["## Training", ""] + [f"![{n}](figures/{n}.png)\n" for n in ("training_curves", "loss_shares")
                                         if n in figs]
    if prov["profile"] == SWEEP_BASE_PROFILE and params.get("sweep"):
        points = ", ".join(map(str, params["sweep"].get("profiles") or []))
        parts += [line.format(points=points) for line in SWEEP_SECTION]
    parts += ["## The losses", "", "![focal](figures/focal_loss_fig1.png)", "",
              "## Controlled variables and deviations", "", CONTROLLED.format(obj_target=_obj_target(df)),
              "## Published anchors", "", PUBLISHED]
    dirty = prov["runs_not_from_a_clean_tree"]
    if dirty:
        parts += [f"**{len(dirty)} of {prov['runs']} run(s) were not produced from a clean tree** "
                  "(their `env.json` records a git revision ending in `-dirty`): " + ", ".join(dirty), ""]
    parts += ["## Provenance", "", "```json", json.dumps(prov, indent=2), "```", "",
              "Files: `tables/*.{md,csv,tex}` (LaTeX uses booktabs), `figures/*.{png,pdf}`, "
              "`runs.csv` (every run, one row each), `provenance.json`.", ""]
    return "\n".join(parts)

