"""Build ``reports/<profile>/``: tables, figures and README with provenance."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pandas as pd

from lossbench.report import figures, tables
from lossbench.report.collect import FAMILY_LABEL, FAMILY_ORDER, collect
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
every classification loss by the number of positive anchors, the prior-probability bias init
(π = 0.01 for sigmoid outputs; softmax background starts at 0.99), the schedule, the
augmentation and the seeds. Only the classification output layer and its loss change.
"""


def _machine(env: dict[str, Any]) -> str:
    """``<CPU model> (<threads> threads, <torch CPU capability>)[ + GPUs]`` from an env.json."""
    cpu = env.get("cpu_model") or env.get("cpu") or "unknown CPU"
    detail = ", ".join(str(x) for x in (f"{env.get('cpu_threads')} threads", env.get("cpu_capability")) if x)
    gpus = [v for k, v in env.items() if k.startswith("GPU ")] + ([env["gpu"]] if env.get("gpu") else [])
    return f"{cpu} ({detail})" + "".join(f" + {g}" for g in gpus)


def _provenance(df: pd.DataFrame, profile: str) -> dict[str, Any]:
    """Where the numbers come from, read from the runs only (nothing of the build itself)."""
    ok = df[df.status == "ok"]
    envs = {r.run: read_json(Path(r.run_dir) / "env.json") for r in ok.itertuples()
            if (Path(r.run_dir) / "env.json").is_file()}
    first = next(iter(envs.values()), {})
    digest = hashlib.sha256(b"".join((Path(d) / "metrics.json").read_bytes() for d in ok.run_dir))
    return {
        "profile": profile,
        "runs": f"{len(ok)} of {len(df)} expected",
        "metrics_sha256": digest.hexdigest()[:16],
        "git_revisions_of_runs": sorted({e.get("git_revision") or "unknown" for e in envs.values()}),
        "runs_not_from_a_clean_tree": [r for r, e in envs.items()
                                       if str(e.get("git_revision")).endswith("-dirty")],
        "machines_of_runs": sorted({_machine(e) for e in envs.values()}),
        "packages": first.get("packages", {}),
        "python": (first.get("python") or first.get("Python") or "unknown").split()[0],
        "sum_of_run_wall_times_s": round(float(ok.get("wall_time_s", pd.Series(dtype=float)).sum()), 1),
    }


def build_report(runs: str | Path, params: dict[str, Any], profile: str,
                 out: str | Path) -> dict[str, Any]:
    """Write every table and figure into ``out`` (atomically, as a whole).

    The output depends on the runs only: unchanged runs give byte-identical files.
    """
    df = collect(runs, params)
    summary = tables.summarise(df)
    best, diffs = tables.cross_family(df, summary)
    prov = _provenance(df, profile)
    fams = [f for f in FAMILY_ORDER if f in set(summary.family)]
    text = {f"{fam}{suffix}": t for fam in fams for suffix, t in tables.family_tables(summary, fam).items()}
    text.update({f"cross_family{suffix}": t for suffix, t in tables.cross_family_tables(best, diffs).items()})
    within = {fam: tables.within_family(df, summary, fam) for fam in fams}
    text.update({f"{fam}_vs_paper_default{suffix}": t for fam, w in within.items() if len(w)
                 for suffix, t in ((".md", tables.comparison_table(w)),
                                   (".csv", w.to_csv(index=False, float_format="%.6f")))})
    with atomic_path(out) as tmp:
        (tmp / "tables").mkdir(parents=True)
        for name, t in text.items():
            (tmp / "tables" / name).write_text(t)
        df.drop(columns=["run_dir"] + [c for c in df.columns if c.startswith("final_diag_anchors")]
                ).to_csv(tmp / "runs.csv", index=False, float_format="%.6f")
        figs = tmp / "figures"
        figures.metric_vs_knob(df, summary, figs, "mAP50")
        figures.metric_vs_knob(df, summary, figs, "AP")
        if len(best):
            figures.cross_family_plot(df, best, figs)
            figures.training_curves(df, best, figs)
            figures.loss_shares(df, best, figs)
        figures.focal_figure(figs)
        (tmp / "provenance.json").write_text(json.dumps(prov, indent=2) + "\n")
        (tmp / "README.md").write_text(_readme(df, fams, text, prov))
    return {"summary": summary, "best": best, "diffs": diffs, "provenance": prov}


def _readme(df: pd.DataFrame, fams: list[str], text: dict[str, str], prov: dict[str, Any]) -> str:
    n_missing = int((df.status != "ok").sum())
    parts = [f"# lossbench report — profile `{prov['profile']}`", "",
             "Generated by `make report` from the runs' `metrics.json`; do not edit by hand.",
             "Metrics are in % on the held-out test split: mAP50 is VOC-style AP at IoU 0.5 "
             "(area under the interpolated precision–recall curve), AP/AP50/AP75/APs/APm/APl are "
             "COCO's (pycocotools). Cells read mean ± std [95% t-interval] over seeds; the best "
             "setting of each family (highest mean mAP50 among complete rows) is in bold.", ""]
    if n_missing:
        miss = df[df.status != "ok"]
        parts += [f"**{n_missing} expected run(s) missing** (shown as such, never averaged away): "
                  + ", ".join(miss["run"]), ""]
    dirty = prov["runs_not_from_a_clean_tree"]
    if dirty:
        parts += [f"**{len(dirty)} of {len(df)} run(s) were not produced from a clean tree** (their "
                  "`env.json` records a git revision ending in `-dirty`): " + ", ".join(dirty), ""]
    if (df["no_detections"] == True).any() if "no_detections" in df else False:  # noqa: E712
        parts += ["Some runs produced no detection above the score threshold; their AP is 0.", ""]
    parts += ["## Best setting of each family", "", text["cross_family.md"], "",
              "![cross-family](figures/cross_family_mAP50.png)", ""]
    for fam in fams:
        parts += [f"## {FAMILY_LABEL[fam]}", "", text[f"{fam}.md"], ""]
        if f"{fam}_vs_paper_default.md" in text:
            parts += ["Against the paper's default setting:", "", text[f"{fam}_vs_paper_default.md"], ""]
    parts += ["![ablations](figures/ablation_mAP50.png)", "",
              "## Training", "", "![curves](figures/training_curves.png)", "",
              "![loss shares](figures/loss_shares.png)", "",
              "## The losses", "", "![focal](figures/focal_loss_fig1.png)", "",
              "## Controlled variables", "", CONTROLLED, "## Published anchors", "", PUBLISHED,
              "## Provenance", "", "```json", json.dumps(prov, indent=2), "```", "",
              "Files: `tables/*.{md,csv,tex}` (LaTeX uses booktabs), `figures/*.{png,pdf}`, "
              "`runs.csv` (every run, one row each), `provenance.json`.", ""]
    return "\n".join(parts)
