"""Build ``reports/<profile>/``: tables, figures, README and provenance, from the runs only."""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from lossbench.families import FAMILIES
from lossbench.report import figures, tables
from lossbench.report.collect import (
    ReportError,
    bootstrap,
    calibration,
    check_schedule,
    collect,
    families_of,
    grid_runs,
    read_pretrain,
    seeds,
    study_families,
)
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


def provenance(df: pd.DataFrame, label: str, bootstrap_spec: dict[str, int],
               inputs: tuple[Path, ...] = ()) -> dict[str, Any]:
    """Where the numbers come from, read from the runs (and the files ``inputs``) only, nothing of the build itself."""
    envs = {r.run: read_json(Path(r.run_dir) / "env.json") for r in df.itertuples()
            if (Path(r.run_dir) / "env.json").is_file()}
    first = next(iter(envs.values()), {})
    digest = hashlib.sha256()
    for path in inputs:
        digest.update(Path(path).read_bytes())
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
    "(`params.yaml: sweep.profiles`: {points}): synth data whose share of positive anchors differs while the labelled "
    "objects per step stay fixed (background area added). It runs after this report (`make sweep`, stage "
    "`report_sweep`); its report, with test mAP50 against the measured positive share, the family × share "
    "interaction test and the training conditions per point: "
    "[`reports/sweep/`](../sweep/README.md) (table: [`tables/sweep.md`](../sweep/tables/sweep.md)).", "",
    "![sweep](../sweep/figures/sweep_mAP50_vs_positive_share.png)", ""]


#: the remedies train after this report (`make remedies`), so this report points to theirs, which sets every family's
#: val-best beside the others, rather than copying numbers that would go stale
REMEDIES_SECTION = [
    "## Later remedies", "",
    "Four later remedies ({families}) are trained in the same head under the same controls, grids around their papers' "
    "values, seeds and selection on val (`params.yaml: remedies`, `make remedies`, after this report). Their report, "
    "with all seven families' val-bests and paper defaults side by side, the primary comparisons of the seven "
    "val-bests and each remedy's deviations from its paper: [`reports/{profile}_remedies/`](../{profile}_remedies/"
    "README.md).", "",
    "![seven families](../{profile}_remedies/figures/cross_family_mAP50.png)", ""]


def build_report(runs: str | Path, params: dict[str, Any], profile: str, out: str | Path,
                 selection: str | Path) -> dict[str, Any]:
    """Write every table and figure into ``out`` (atomically, as a whole).

    The selection is recomputed from the grid runs' val mAP50 and must agree with the file ``selection`` (which the
    extra and calibration runs trained from). The output depends on the runs only: unchanged runs give byte-identical
    files.
    """
    sel = select_from(grid_runs(runs, params), params)
    check_selection(sel, selection)
    families = study_families(params)
    pre = read_pretrain(runs)
    spec = tables.comparison_spec(params)
    df = collect(runs, params, {f: sel["families"][f]["best"] for f in families})
    t_iters, cal_seeds = check_schedule(df, params), calibration(params)[1]
    study = df[~df["calibration"]].reset_index(drop=True)  # the T runs: a row's position is its bootstrap column
    boot = bootstrap(study, tables.N_BOOT, tables.BOOT_SEED)
    res = {"selection": sel, "runs": df, "T": t_iters, "pretrain": pre,
           "comparisons": tables.primary(study, boot, params, sel), "summary": tables.summary(study, boot, params, sel),
           "calibration": tables.calibration(df, sel, cal_seeds), "prior_off": tables.prior_off(study, boot, params, sel),
           "loss_shares": tables.loss_shares(study)}
    res["orderings"] = tables.orderings(res["comparisons"], sel)
    res["provenance"] = provenance(df, profile, {"n_boot": tables.N_BOOT, "seed": tables.BOOT_SEED},
                                   (Path(runs) / "pretrain" / "metrics.json",))
    grid_seeds = seeds(params)
    text = report_texts(res["summary"], families, grid_seeds, spec["collapse_below"], (
        ("comparisons", tables.comparison_tables(res["comparisons"], spec["alpha"], spec["power"],
                                                 spec["collapse_below"])),
        ("calibration", tables.calibration_tables(res["calibration"])),
        ("prior_off", tables.prior_off_tables(res["prior_off"], spec["collapse_below"])),
        ("loss_shares", tables.loss_share_tables(res["loss_shares"]))))

    def draw(figs: Path) -> None:
        figures.ablation(res["summary"], figs, grid_seeds)
        figures.cross_family(study, res["summary"], figs)
        figures.calibration(df, res["calibration"], cal_seeds, t_iters, figs)
        figures.focal_figure(figs)

    write_report(out, text, df, res["provenance"], draw, lambda: readme(res, text, params, profile))
    return res


def report_texts(summary: pd.DataFrame, families: list[str], grid_seeds: list[int], collapse_below: float,
                 parts: tuple[tuple[str, dict[str, str]], ...]) -> dict[str, str]:
    """``{file name: text}``: the per-setting tables of ``families`` (``<family>.md`` ...) and each named table of
    ``parts`` (``(name, {suffix: text})``)."""
    text = {f"{fam}{sfx}": t for fam in families
            for sfx, t in tables.family_tables(summary, fam, grid_seeds, collapse_below).items()}
    for name, texts in parts:
        text.update({f"{name}{sfx}": t for sfx, t in texts.items()})
    return text


def write_report(out: str | Path, text: dict[str, str], df: pd.DataFrame, prov: dict[str, Any],
                 draw: Callable[[Path], None], readme_text: Callable[[], str]) -> None:
    """Replace ``out`` as a whole: ``tables/`` (``text``), ``runs.csv`` (``df``), ``figures/`` (``draw``),
    ``provenance.json`` and ``README.md``."""
    with atomic_path(out) as tmp:
        (tmp / "tables").mkdir(parents=True)
        for name, t in text.items():
            (tmp / "tables" / name).write_text(t)
        df.drop(columns=["run_dir", "records", "setting", "val_curve"]).to_csv(
            tmp / "runs.csv", index=False, float_format="%.6f")
        draw(tmp / "figures")
        (tmp / "provenance.json").write_text(json.dumps(prov, indent=2) + "\n")
        (tmp / "README.md").write_text(readme_text())


def pretrain_text(pre: dict[str, Any]) -> str:
    """The pretrained backbone in words: recipe, held-out accuracy, cost, checkpoint; or what the config loads."""
    if "spec" not in pre:
        return f"none (the config's init_cfg: `{json.dumps(pre.get('backbone_init_cfg'))}`)."
    spec, held, sec, ckpt = pre["spec"], pre["held_out"], pre["seconds"], pre["checkpoint"]
    data = spec.get("data") or {}
    return (f"the profile's backbone trained here as a multi-label shape classifier (no box, anchor or detection "
            f"loss): {data.get('n_train', 0):,} generated images of generator seed {data.get('seed')} "
            f"({data.get('image_size')} px; every detection set uses its own seed), {spec.get('steps', 0):,} steps "
            f"of {spec.get('batch_size')}, lr {spec.get('lr')}, weight decay {spec.get('weight_decay')}, "
            f"{spec.get('warmup')} warm-up steps, seed {spec.get('seed')}. Held out ({data.get('n_val', 0):,} "
            f"images, step {held.get('step')}): mAP {held.get('mAP')} %, subset accuracy "
            f"{held.get('subset_accuracy')} %. Cost: {sec.get('total')} s ({sec.get('render')} s rendering the "
            f"images, {sec.get('train')} s training, {pre.get('threads', '?')} threads). Checkpoint: "
            f"{ckpt['bytes'] / 1e6:.1f} MB ({ckpt.get('dtype')}, sha256 `{str(ckpt.get('sha256'))[:16]}`), "
            f"{pre['backbone_parameters']:,} backbone parameters; every run loads it.")


def regime(profile: str, t_iters: int, pre: dict[str, Any]) -> str:
    init = pre.get("backbone_init_cfg")
    backbone = (f"the backbone pretrained here, {pre['backbone_parameters']:,} parameters" if "spec" in pre
                else "a backbone from scratch (init_cfg null)" if init is None
                else f"the backbone the config's init_cfg loads, {json.dumps(init)}")
    return f"{profile} profile, T = {t_iters:,} iterations, {backbone}"


def _spec_words(spec: list[dict[str, Any]]) -> str:
    words = [f"every other {x['within']} setting against its paper default" if "within" in x
             else f"the {x['across'].replace('_', '-')}s across families, every pair" for x in spec]
    return "; ".join(words)


def detectability(comp: pd.DataFrame, goal: float) -> list[str]:
    """Per family, whether each within-family comparison detects ``goal`` points at the design's power."""
    lines = []
    for fam, g in comp[comp["kind"] == "within"].groupby("family", sort=False):
        miss = g[~(g["detectable"] <= goal)]
        det = ", ".join(tables.num(x) for x in g["detectable"])
        if miss.empty:
            lines.append(f"- {fam}: every one of its {len(g)} comparisons detects {goal:g} points (detectable: {det}).")
        else:
            lines.append(f"- {fam}: {len(g) - len(miss)} of {len(g)} comparisons detect {goal:g} points; "
                         + "; ".join(f"{r.a} vs {r.b} detects "
                                     + ("nothing (no test)" if math.isnan(r.detectable)
                                        else f"{r.detectable:.1f} points")
                                     for r in miss.itertuples()) + ".")
    return lines


def ordering_line(r: Any, sel: dict[str, Any], where: str, cal: pd.DataFrame | None = None) -> str:
    """One paper's claim read off the primary verdicts, with its regime and, from ``cal``, the calibration's caveat."""
    default = tables.chosen(sel, "default")[r.family]
    head = f"- {r.claim} ({r.family} {default}): **{r.status}**; "
    if r.status == "not tested":
        return head + "the paper default of params.yaml is not the paper's value."
    if not r.comparisons:
        return head + (f"no primary comparison against the default (no other grid setting or no `within: "
                       f"{r.family}`). Regime: {where}.")
    parts = [f"of {r.comparisons} primary comparison(s) against the default, {r.default_above} resolved with the "
             "default above"]
    if r.other_above:
        parts.append(f"{len(r.other_above)} with another setting above it ("
                     + ", ".join(f"{r.family} {s}" for s in r.other_above) + ")")
    if r.unresolved:
        parts.append(f"{r.unresolved} not resolved")
    caveat = tables.calibration_caveat(cal, r.family) if cal is not None else ""
    return head + f"{', '.join(parts)}. Regime: {where}.{caveat}"


def _clip_policy(summ: pd.DataFrame) -> str:
    norms = sorted({n for x in summ["max_norm"] for n in x.split("/")})
    if norms == ["none"]:
        return "No run clipped its gradients (`clip.max_norm` null in every run)."
    return (f"Gradient clipping: before each optimiser step the total gradient norm is scaled down to `max_norm` when "
            f"it exceeds it (values in these runs: {', '.join(norms)}); clipped steps, mean over a setting's runs: "
            + "–".join(dict.fromkeys(f"{x:.1f}%" for x in (summ["clip_mean"].min(), summ["clip_mean"].max())))
            + f", at most {summ['clip_max'].max():.1f}% in one run (the tables' clipped-steps column).")


def readme(res: dict[str, Any], text: dict[str, str], params: dict[str, Any], profile: str) -> str:
    """The report's prose, every number from the tables it cites."""
    sel, df, comp, summ, prov = res["selection"], res["runs"], res["comparisons"], res["summary"], res["provenance"]
    spec = tables.comparison_spec(params)
    grid = tables.seeds_text(sel["seeds"])
    extra = tables.seeds_text(seeds(params, "extra_seeds"))
    cal_iters, cal_seeds = calibration(params)
    where = regime(profile, res["T"], res["pretrain"])
    m = int(comp["p"].notna().sum())
    parts = [f"# lossbench report — profile `{profile}`", "",
             "Generated by `lossbench report` (stage `report`) from the runs' `metrics.json` and test records; do "
             "not edit by hand.", "", "## How the numbers are made", "",
             "- **Chosen on val, reported on test.** Each family's val-best setting is the grid setting with the "
             f"highest mean val mAP50 over seeds {grid}, which every grid setting has (ties: the paper default, then "
             "grid order); the test split never chooses. The selection is recomputed here and agrees with the "
             "selection file the extra and calibration runs were trained from.",
             f"- **Runs.** Every grid setting: seeds {grid}, T = {res['T']:,} iterations (the profile config's "
             f"schedule). Each family's paper default and val-best: also seeds {extra}. The prior-off ablation: seeds "
             f"{grid}. Calibration: the paper default and val-best again on a complete schedule of 2T = "
             f"{cal_iters:,} iterations, seeds {tables.seeds_text(cal_seeds)}.",
             "- **Metric.** mAP50 is VOC-style AP at IoU 0.5, the area under the interpolated precision–recall curve "
             "(MMDetection's `eval_map`, area mode), mean over classes, in %.",
             f"- **Primary comparisons**, fixed in `params.yaml: comparisons` before the runs: {_spec_words(spec['primary'])}"
             f". One Holm family of {m} tests at family-wise {100 * (1 - spec['alpha']):g}%; each interval at the "
             "level Holm tests its comparison at, so a difference is claimed exactly where it excludes 0, otherwise "
             "it is *not resolved*. Seed variance pooled over a family's settings (one-way model), across families "
             "a Welch standard error; a val-best uses only the seeds that did not choose it. Test-image noise: the "
             f"variance of each difference over {tables.N_BOOT} bootstrap resamples of the test images, both means "
             f"on the same resample (paired; resampling seed {tables.BOOT_SEED}, recomputed from the records at every "
             "build), is added to its standard error. Every "
             "interval lies within the metric's range ([0, 100] for a mean, [−100, 100] for a difference). Each "
             f"comparison states the difference it detects with {100 * spec['power']:g}% power.",
             f"- **Collapse.** A run whose final val mAP50 is below {spec['collapse_below']:g}% has collapsed: counted "
             "per setting, compared by Fisher's exact test, and left out of the mAP means the comparisons use.",
             "- **Everything else is exploratory**, outside the Holm family: the prior-init ablation, the loss "
             "shares, the calibration.", ""]
    nodet = df.loc[df["test_no_detections"], "run"].tolist()
    if nodet:
        parts += ["Runs with no detection above the score threshold on test: " + ", ".join(nodet), ""]
    parts += ["## Pretrained backbone", "", "Pretrained backbone: " + pretrain_text(res["pretrain"]), "",
              "## Calibration: T against 2T", "", tables.calibration_verdict(res["calibration"]), "",
              text["calibration.md"], "![calibration](figures/calibration_val_mAP50.png)", "",
              "## Primary comparisons", "", text["comparisons.md"],
              f"Detectable differences against the goal of {spec['detect_goal']:g} points (test mAP50, "
              f"{100 * spec['power']:g}% power):", "", *detectability(comp, spec["detect_goal"]), "",
              "![cross-family](figures/cross_family_mAP50.png)", "",
              "## Paper orderings", "",
              "Read mechanically off the primary verdicts of each family's comparisons against its paper default: "
              "*confirmed* when every one has the default above, *contradicted* when another setting is above it, "
              "otherwise *not resolved*.", ""]
    parts += [ordering_line(r, sel, where, res["calibration"]) for r in res["orderings"].itertuples()]
    parts += ["", "## Best setting of each family", ""]
    for fam in families_of(summ):
        rows = summ[summ["family"] == fam]
        b, d = rows[rows["best"]].iloc[0], rows[rows["default"]].iloc[0]
        line = (f"- **{FAMILIES[fam].label}**: val-best {b['setting']} (mean val mAP50 {b['val_mean']:.1f}% over "
                f"seeds {grid}); test mAP50 {tables.ci(b['test_all_mean'], b['test_all_lo'], b['test_all_hi'])} over "
                f"seeds {tables.seeds_text(b['seeds'])}.")
        line += (" It is the paper default." if b["setting"] == d["setting"] else
                 f" Paper default {d['setting']}: test mAP50 "
                 f"{tables.ci(d['test_all_mean'], d['test_all_lo'], d['test_all_hi'])} over seeds "
                 f"{tables.seeds_text(d['seeds'])}.")
        if b["grid_edge"]:
            line += f" **On the grid's edge**: {b['grid_edge']}; the optimum may lie outside the grid."
        parts.append(line)
    parts += ["", "## Per-setting summary", "", _clip_policy(summ), ""]
    for fam in families_of(summ):
        parts += [f"### {FAMILIES[fam].label}", "", text[f"{fam}.md"]]
    parts += ["![ablations](figures/ablation_mAP50.png)", "",
              "## Exploratory (outside the Holm family)", "", "### Prior-probability init", "", text["prior_off.md"],
              "### Loss shares", "", text["loss_shares.md"]]
    if profile == SWEEP_BASE_PROFILE and params.get("sweep"):
        points = ", ".join(map(str, params["sweep"].get("profiles") or []))
        parts += [line.format(points=points) for line in SWEEP_SECTION]
    remedies = (params.get("remedies") or {}).get("families")
    if remedies:
        names = ", ".join(FAMILIES[f].label for f in remedies if f in FAMILIES)
        parts += [line.format(families=names, profile=profile) for line in REMEDIES_SECTION]
    parts += ["## The losses", "", "![focal](figures/focal_loss_fig1.png)", "",
              "## Controlled variables and deviations", "", CONTROLLED.format(obj_target=_obj_target(df)),
              "## Published anchors", "", PUBLISHED]
    dirty = prov["runs_not_from_a_clean_tree"]
    if dirty:
        parts += [f"**{len(dirty)} of {prov['runs']} run(s) were not produced from a clean tree** "
                  "(their `env.json` records a git revision ending in `-dirty`): " + ", ".join(dirty), ""]
    parts += ["## Provenance", "", "```json", json.dumps(prov, indent=2), "```", "",
              "Files: `tables/*.{md,csv,tex}` (values in %; LaTeX uses booktabs), `figures/*.{png,pdf}`, `runs.csv` "
              "(every run, one row each, metrics as fractions as in `metrics.json`), `provenance.json`.", ""]
    return "\n".join(parts)
