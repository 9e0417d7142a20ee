"""Seaborn figures of the study, each saved as PNG and PDF."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
import torch  # noqa: E402

from lossbench.models.losses.functional import focal_loss, sse_loss  # noqa: E402
from lossbench.report.collect import FAMILY_LABEL, FAMILY_ORDER, KNOB_LABEL  # noqa: E402

PALETTE = dict(zip(FAMILY_ORDER, sns.color_palette("colorblind", 3)))
DIAG_SHARES = (("diag_share_pos", "positives"), ("diag_share_hard_neg", "hard negatives"),
               ("diag_share_easy_neg", "easy negatives"))
sns.set_theme(style="whitegrid", context="notebook")


def _save(fig, out: Path, name: str) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / f"{name}.png", out / f"{name}.pdf"]
    fig.savefig(paths[0], dpi=150, bbox_inches="tight")
    # no creation date: unchanged runs give byte-identical files
    fig.savefig(paths[1], bbox_inches="tight", metadata={"CreationDate": None})
    plt.close(fig)
    return paths


def metric_vs_knob(df: pd.DataFrame, summary: pd.DataFrame, out: Path,
                   metric: str = "mAP50") -> list[Path]:
    """One panel per family: the metric (%) per knob value; seeds as dots, the mean as a line
    and the 95% t-interval over seeds (from ``summary``) as a band."""
    fams = [f for f in FAMILY_ORDER if f in set(df.family)]
    fig, axes = plt.subplots(1, len(fams), figsize=(4.2 * len(fams), 3.6), sharey=True,
                             squeeze=False)
    for ax, fam in zip(axes[0], fams):
        s = summary[summary.family == fam].sort_values("order").reset_index(drop=True)
        x = np.arange(len(s))
        mean, lo, hi = (100 * s[f"{metric}_{k}"].astype(float) for k in ("mean", "lo", "hi"))
        ax.plot(x, mean, color=PALETTE[fam], marker="o", label="mean")
        ax.fill_between(x, lo, hi, color=PALETTE[fam], alpha=0.2, label="95% t-interval")
        g = df[(df.family == fam) & (df.status == "ok")]
        pos = {lab: i for i, lab in enumerate(s["label"])}
        ax.scatter(g["label"].map(pos) + 0.06 * (g["seed"] - g["seed"].mean()),
                   100 * g[metric].astype(float), color="0.25", s=12, zorder=3, label="seeds")
        incomplete = s[s["n"] < s["n_expected"]]
        for _, r in incomplete.iterrows():
            ax.annotate(f"{r['n']}/{r['n_expected']} seeds", (pos[r["label"]], 1.0),
                        xycoords=("data", "axes fraction"), xytext=(0, -4),
                        textcoords="offset points", ha="center", va="top", fontsize=8,
                        color="crimson")
        ax.set_xticks(x, s["label"])
        ax.set_xlabel(KNOB_LABEL[fam])
        ax.set_ylabel(f"{metric} on test (%)" if ax is axes[0][0] else "")
        ax.set_title(FAMILY_LABEL[fam], fontsize=11)
    axes[0][0].legend(fontsize=8, loc="lower left")
    fig.suptitle(f"Ablations ({metric}): mean over seeds, 95% t-interval band, dots = seeds",
                 fontsize=11)
    fig.tight_layout()
    return _save(fig, out, f"ablation_{metric}")


def cross_family_plot(df: pd.DataFrame, best: pd.DataFrame, out: Path,
                      metric: str = "mAP50") -> list[Path]:
    """Each family's best setting: seeds as dots, mean and 95% t-interval as error bar."""
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    labels = []
    for i, (_, r) in enumerate(best.iterrows()):
        fam = r["family"]
        g = df[(df.family == fam) & (df.order == r["order"]) & (df.status == "ok")]
        vals = 100 * g[metric].astype(float)
        mean = 100 * r[f"{metric}_mean"]
        lo, hi = 100 * r[f"{metric}_lo"], 100 * r[f"{metric}_hi"]
        ax.bar(i, mean, color=PALETTE[fam], alpha=0.6, width=0.6)
        if not math.isnan(lo):
            ax.errorbar(i, mean, yerr=[[mean - lo], [hi - mean]], color="black", capsize=6)
        ax.scatter(np.full(len(vals), i), vals, color="0.2", zorder=3, s=14)
        labels.append(f"{fam}\n{KNOB_LABEL[fam]} = {r['label']}")
    ax.set_xticks(range(len(labels)), labels)
    ax.set_ylabel(f"{metric} on test (%)")
    ax.set_title("Best setting of each family (95% t-interval)", fontsize=11)
    fig.tight_layout()
    return _save(fig, out, f"cross_family_{metric}")


def read_curve(run_dir: str | Path, name: str) -> pd.DataFrame | None:
    """A DVCLive curve (``step``, value) of a run, or None."""
    path = Path(run_dir) / "dvclive" / "plots" / "metrics" / f"{name}.tsv"
    return pd.read_csv(path, sep="\t") if path.is_file() else None


def training_curves(df: pd.DataFrame, best: pd.DataFrame, out: Path) -> list[Path]:
    """Classification and box loss over training, best setting of each family, every seed."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for _, r in best.iterrows():
        fam = r["family"]
        for _, run in df[(df.family == fam) & (df.order == r["order"]) & (df.status == "ok")].iterrows():
            for ax, key in zip(axes, ("loss_cls", "loss_bbox")):
                c = read_curve(run["run_dir"], key)
                if c is not None:
                    ax.plot(c["step"], c[key], color=PALETTE[fam], alpha=0.8, lw=1.2,
                            label=f"{fam} ({r['label']})" if run["seed"] == df.seed.min() else None)
    for ax, title in zip(axes, ("classification loss (per positive)", "box loss (L1, per positive)")):
        ax.set_xlabel("iteration")
        ax.set_title(title, fontsize=11)
        ax.set_yscale("log")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    return _save(fig, out, "training_curves")


def loss_shares(df: pd.DataFrame, best: pd.DataFrame, out: Path) -> list[Path]:
    """Share of the classification loss from positives / hard / easy negatives over training."""
    fams = best["family"].tolist()
    fig, axes = plt.subplots(1, len(fams), figsize=(4.2 * len(fams), 3.4), sharey=True, squeeze=False)
    colors = sns.color_palette("Set2", 3)
    for ax, (_, r) in zip(axes[0], best.iterrows()):
        fam = r["family"]
        runs = df[(df.family == fam) & (df.order == r["order"]) & (df.status == "ok")]
        curves = []
        for _, run in runs.iterrows():
            parts = [read_curve(run["run_dir"], k) for k, _ in DIAG_SHARES]
            if all(p is not None for p in parts):  # the shares on the first curve's steps
                shares = {k: p[k].values[:len(parts[0])] for (k, _), p in zip(DIAG_SHARES, parts)}
                curves.append(parts[0][["step"]].assign(**shares))
        if curves:
            mean = pd.concat(curves).groupby("step").mean().reset_index()
            ax.stackplot(mean["step"], *[mean[k] for k, _ in DIAG_SHARES], colors=colors,
                         labels=[lab for _, lab in DIAG_SHARES], alpha=0.85)
        ax.set_title(f"{fam} ({KNOB_LABEL[fam]} = {r['label']})", fontsize=10)
        ax.set_xlabel("iteration")
        ax.set_ylim(0, 1)
    axes[0][0].set_ylabel("share of classification loss")
    axes[0][0].legend(loc="lower left", fontsize=8, framealpha=0.9)
    fig.suptitle("Where the classification loss comes from (easy negative: background prob. > 0.9)",
                 fontsize=11)
    fig.tight_layout()
    return _save(fig, out, "loss_shares")


def _grad_weight(kind: str, p_t: torch.Tensor, positive: bool, **kw) -> np.ndarray:
    """|dL/dx| / |dCE/dx| for an example of probability p_t, from lossbench's own losses."""
    z = torch.logit(p_t.double()).clone()  # logit of p_t
    x = (z if positive else -z).requires_grad_(True)  # logit of the foreground class
    label = torch.zeros(len(x), dtype=torch.long) if positive else torch.ones(len(x), dtype=torch.long)
    if kind == "focal":
        loss = focal_loss(x[:, None], label, kw["gamma"], 0.5)
    else:  # sse
        loss = sse_loss(x, torch.full((len(x), 1), 20.0, dtype=x.dtype), label,
                        torch.ones_like(x), kw["lambda_noobj"])
    (g,) = torch.autograd.grad(loss.sum(), x)
    ce_grad = 1.0 - p_t.double()  # |d CE / dx| = 1 - p_t
    scale = 2.0 if kind == "focal" else 1.0  # undo alpha = 0.5
    return (scale * g.abs() / ce_grad).numpy()


def focal_figure(out: Path, gammas=(0.0, 0.5, 1.0, 2.0, 5.0)) -> list[Path]:
    """Lin et al. (2017) Fig. 1 (FL vs p_t), and each family's weight of an example vs p_t."""
    p = torch.linspace(0.001, 0.999, 500)
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    cmap = sns.color_palette("viridis", len(gammas))
    for c, g in zip(cmap, gammas):
        fl = (-(1 - p) ** g * torch.log(p)).numpy()
        a.plot(p.numpy(), fl, color=c, label=f"γ = {g:g}")
    a.set_xlabel("probability of ground truth class $p_t$")
    a.set_ylabel("loss")
    a.set_ylim(0, 5)
    a.set_title("Focal loss FL = −(1 − $p_t$)$^γ$ log $p_t$ (Lin et al. 2017, Fig. 1)", fontsize=10)
    a.legend(fontsize=8)
    a.axvspan(0.6, 1.0, color="0.9", zorder=0)
    a.text(0.8, 4.5, "well-classified\nexamples", ha="center", fontsize=8)

    pn = p.numpy()
    b.plot(pn, np.ones_like(pn), color="0.3", lw=1, ls=":", label="cross-entropy (reference)")
    for g, ls in ((2.0, "-"), (0.5, "--")):
        b.plot(pn, _grad_weight("focal", p, positive=False, gamma=g), color=PALETTE["focal"], ls=ls,
               label=f"focal γ = {g:g}")
    for lam, ls in ((0.5, "-"), (1.0, "--")):
        b.plot(pn, _grad_weight("sse", p, positive=False, lambda_noobj=lam), color=PALETTE["sse"],
               ls=ls, label=f"SSE negative, λ_noobj = {lam:g}")
    b.plot(pn, _grad_weight("sse", p, positive=True, lambda_noobj=0.5), color=PALETTE["sse"],
           ls="-.", label="SSE positive (objectness)")
    cut = 0.3  # illustrative: in training the cut is set per image by the k-th largest loss
    b.plot(pn, np.where(pn < cut, 1.0, 0.0), color=PALETTE["ohem"], drawstyle="steps-post",
           label=f"OHEM negative: kept if among top-k losses\n(cut $p_t$* = {cut}, illustrative)")
    b.set_xlabel("probability of ground truth class $p_t$")
    b.set_ylabel("|∂L/∂x| ÷ |∂CE/∂x|")
    b.set_ylim(0, 1.3)
    b.set_title("Effective weight of one example relative to cross-entropy", fontsize=10)
    b.legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    return _save(fig, out, "focal_loss_fig1")
