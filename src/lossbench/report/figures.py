"""Seaborn figures of the study, each saved as PNG and PDF."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
import torch  # noqa: E402

from lossbench.families import FAMILIES, FAMILY_ORDER  # noqa: E402
from lossbench.models.losses.functional import focal_loss, sse_loss  # noqa: E402
from lossbench.report.collect import families_of  # noqa: E402

PALETTE = dict(zip(FAMILY_ORDER, sns.color_palette("colorblind", len(FAMILY_ORDER))))
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


def _setting_ticks(g: pd.DataFrame) -> list[str]:
    """Tick labels of a family's settings: the label, ★ val-best, † paper default."""
    return [lab + (" ★" if b else "") + (" †" if d else "") for lab, b, d in zip(g["label"], g["best"], g["default"])]


def ablation(summary: pd.DataFrame, out: Path, grid_seeds: list[int]) -> list[Path]:
    """One panel per family: per grid setting, mean val mAP50 over the grid seeds (hollow, 95%
    t-interval) and mean test mAP50 over every seed (filled, combined 95% interval)."""
    families = families_of(summary)
    fig, axes = plt.subplots(1, len(families), figsize=(14, 4.2), sharey=True, squeeze=False)
    for ax, fam in zip(axes[0], families):
        g = summary[(summary.family == fam) & summary.prior].sort_values("order").reset_index(drop=True)
        x = np.arange(len(g))
        for split, dx, face in (("val", -0.12, "white"), ("test", 0.12, PALETTE[fam])):
            mean, lo, hi = (100 * g[f"{split}_{k}"].to_numpy(dtype=float) for k in ("mean", "lo", "hi"))
            ax.errorbar(x + dx, mean, yerr=[mean - lo, hi - mean], fmt="o", color=PALETTE[fam],
                        mfc=face, capsize=3, label=split)
        ax.set_xticks(x, _setting_ticks(g), rotation=30, ha="right", fontsize=9)
        ax.set_xlabel(FAMILIES[fam].knob_label)
        ax.set_title(FAMILIES[fam].label, fontsize=11)
    axes[0][0].set_ylabel("mAP@0.5 (%)")
    axes[0][0].legend(handles=[
        plt.Line2D([], [], marker="o", ls="", color="0.3", mfc="white",
                   label=f"val, seeds {','.join(map(str, grid_seeds))} (t 95%)"),
        plt.Line2D([], [], marker="o", ls="", color="0.3",
                   label="test, every seed (seeds + images 95%)")], fontsize=8, loc="lower left")
    fig.suptitle("Grid of each family: val chooses (★ val-best), test reports; † paper default", fontsize=11)
    fig.tight_layout()
    return _save(fig, out, "ablation_mAP50")


def cross_family(df: pd.DataFrame, summary: pd.DataFrame, out: Path) -> list[Path]:
    """Each family's paper default and val-best (one bar when they coincide): mean test mAP50
    with its combined 95% interval, seeds as dots."""
    rows = summary[summary.prior & (summary.best | summary.default)]
    fig, ax = plt.subplots(figsize=(7.5, 4))
    labels = []
    for i, r in enumerate(rows.itertuples()):
        vals = 100 * df.loc[df.condition == r.condition, "test_mAP50"].astype(float)
        mean, lo, hi = 100 * r.test_mean, 100 * r.test_lo, 100 * r.test_hi
        ax.bar(i, mean, color=PALETTE[r.family], alpha=0.35 if not r.best else 0.7, width=0.65)
        ax.errorbar(i, mean, yerr=[[mean - lo], [hi - mean]], color="black", capsize=6)
        ax.scatter(np.full(len(vals), i), vals, color="0.2", zorder=3, s=12)
        role = " = ".join(t for t, on in (("val-best", r.best), ("default", r.default)) if on)
        labels.append(f"{r.family}\n{r.label}\n({role})")
    ax.set_xticks(range(len(labels)), labels, fontsize=8)
    ax.set_ylabel("test mAP@0.5 (%)")
    ax.set_title("Paper default and val-best of each family: mean, 95% interval (seeds + test "
                 "images), dots = seeds", fontsize=10)
    fig.tight_layout()
    return _save(fig, out, "cross_family_mAP50")


def calibration(df: pd.DataFrame, summary: pd.DataFrame, out: Path, target: float) -> list[Path]:
    """val mAP50 against iteration for each family's paper default (solid) and val-best (dashed, when it differs), over
    the seeds whose val curve has the most points (every seed when all were validated alike): their mean, and the range
    over those seeds as a band (two seeds give no useful t band); the study's target as a dotted line."""
    fig, ax = plt.subplots(figsize=(6.5, 4))
    rows = summary[summary.prior & (summary.default | summary.best)]
    for r in rows.itertuples():
        g = df[df.condition == r.condition]
        dense = g[g["val_curve"].map(len) == g["val_curve"].map(len).max()]
        curves = pd.DataFrame([{"iter": it, "seed": s, "v": 100 * v}
                               for s, c in zip(dense["seed"], dense["val_curve"]) for it, v in c])
        m = curves.groupby("iter")["v"].agg(["mean", "min", "max"]).reset_index()
        role = "paper default" if r.default else "val-best"
        ax.plot(m["iter"], m["mean"], marker="o", ms=3, color=PALETTE[r.family], ls="-" if r.default else "--",
                label=f"{r.family} {r.label}, {role} (seeds {','.join(map(str, dense['seed']))})")
        ax.fill_between(m["iter"], m["min"], m["max"], color=PALETTE[r.family], alpha=0.15)
    ax.axhline(100 * target, color="0.4", ls=":", lw=1, label=f"target {100 * target:g}%")
    ax.set(xlabel="iteration", ylabel="val mAP@0.5 (%)")
    ax.set_title("Calibration: val mAP50 during training (mean; band: range over seeds)", fontsize=10)
    ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    return _save(fig, out, "calibration_val_mAP50")


def read_curve(run_dir: str | Path, name: str) -> pd.DataFrame | None:
    """A DVCLive curve (``step``, value) of a run, or None."""
    path = Path(run_dir) / "dvclive" / "plots" / "metrics" / f"{name}.tsv"
    return pd.read_csv(path, sep="\t") if path.is_file() else None


def training_curves(df: pd.DataFrame, best: pd.DataFrame, out: Path) -> list[Path]:
    """Classification and box loss over training, val-best setting of each family, every seed;
    nothing when no run has its curves."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    drawn = False
    for r in best.itertuples():
        runs = df[df.condition == r.condition]
        for i, run in enumerate(runs.itertuples()):
            for ax, key in zip(axes, ("loss_cls", "loss_bbox")):
                c = read_curve(run.run_dir, key)
                if c is not None:
                    drawn = True
                    ax.plot(c["step"], c[key], color=PALETTE[r.family], alpha=0.8, lw=1.2,
                            label=f"{r.family} {r.label}" if i == 0 else None)
    if not drawn:
        plt.close(fig)
        return []
    for ax, title in zip(axes, ("classification loss (per positive)", "box loss (L1, per positive)")):
        ax.set(xlabel="iteration", yscale="log")
        ax.set_title(title, fontsize=11)
    axes[0].legend(fontsize=8)
    fig.suptitle("Training losses of each family's val-best setting, every seed", fontsize=11)
    fig.tight_layout()
    return _save(fig, out, "training_curves")


def loss_shares(df: pd.DataFrame, best: pd.DataFrame, out: Path) -> list[Path]:
    """Share of the classification loss from positives / hard / easy negatives over training,
    val-best setting of each family, mean over seeds; nothing when no run has the curves."""
    fig, axes = plt.subplots(1, len(best), figsize=(4.2 * len(best), 3.4), sharey=True, squeeze=False)
    colors = sns.color_palette("Set2", 3)
    drawn = False
    for ax, r in zip(axes[0], best.itertuples()):
        curves = []
        for run in df[df.condition == r.condition].itertuples():
            parts = [read_curve(run.run_dir, k) for k, _ in DIAG_SHARES]
            if all(p is not None for p in parts):  # the shares on the first curve's steps
                shares = {k: p[k].values[:len(parts[0])] for (k, _), p in zip(DIAG_SHARES, parts)}
                curves.append(parts[0][["step"]].assign(**shares))
        if curves:
            drawn = True
            mean = pd.concat(curves).groupby("step").mean().reset_index()
            ax.stackplot(mean["step"], *[mean[k] for k, _ in DIAG_SHARES], colors=colors,
                         labels=[lab for _, lab in DIAG_SHARES], alpha=0.85)
        ax.set_title(f"{r.family} {r.label} (val-best, mean over seeds)", fontsize=10)
        ax.set(xlabel="iteration", ylim=(0, 1))
    if not drawn:
        plt.close(fig)
        return []
    axes[0][0].set_ylabel("share of classification loss")
    axes[0][0].legend(loc="lower left", fontsize=8, framealpha=0.9)
    fig.suptitle("Where the classification loss comes from (easy negative: background prob. > 0.9)", fontsize=11)
    fig.tight_layout()
    return _save(fig, out, "loss_shares")


def sweep(table: pd.DataFrame, out: Path) -> list[Path]:
    """Test mAP50 against the measured share of positive anchors (log x): one colour per family,
    solid = paper default, dashed = val-best, error bars = combined 95% intervals.

    ``table``: one row per (profile, family, role) with ``point`` (how the profile's data differs), ``positive_share``,
    ``mean``, ``lo``, ``hi``; role ``both``: the val-best is the paper default (drawn solid).
    """
    fig, ax = plt.subplots(figsize=(7, 4.5))
    offsets = {"default": 0.985, "both": 0.985, "best": 1.015}  # side by side on the log axis
    names = {"default": "paper default", "both": "paper default = val-best", "best": "val-best"}
    for (fam, role), g in table.groupby(["family", "role"], sort=False):
        g = g.sort_values("positive_share")
        x = 100 * g["positive_share"].to_numpy(dtype=float) * offsets[role]
        mean, lo, hi = (100 * g[k].to_numpy(dtype=float) for k in ("mean", "lo", "hi"))
        name = names[role]
        ax.errorbar(x, mean, yerr=[mean - lo, hi - mean], color=PALETTE[fam], capsize=3, marker="o",
                    ls="-" if role == "default" else "--", mfc="white" if role == "best" else PALETTE[fam],
                    label=f"{fam} {g['label'].iloc[0]} ({name})")
    ax.set_xscale("log")
    ticks = table.drop_duplicates("profile")
    ax.minorticks_off()
    ax.set_xticks(100 * ticks["positive_share"],
                  [f"{100 * s:.3g}%\n({p})" for s, p in zip(ticks["positive_share"], ticks["point"], strict=True)])
    ax.set(xlabel="positive anchors (% of all anchors, measured; log scale)", ylabel="test mAP@0.5 (%)")
    ax.set_title("Foreground share sweep: mean over seeds, 95% interval (seeds + test images)", fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return _save(fig, out, "sweep_mAP50_vs_positive_share")


def _grad_weight(kind: str, p_t: torch.Tensor, positive: bool, **kw) -> np.ndarray:
    """|dL/dx| / |dCE/dx| for an example of probability p_t, from lossbench's own losses."""
    z = torch.logit(p_t.double()).clone()  # logit of p_t
    x = (z if positive else -z).requires_grad_(True)  # logit of the foreground class
    label = torch.zeros(len(x), dtype=torch.long) if positive else torch.ones(len(x), dtype=torch.long)
    if kind == "focal":
        loss = focal_loss(x[:, None], label, kw["gamma"], 0.5)
    else:  # sse
        loss = sse_loss(x, torch.full((len(x), 1), 20.0, dtype=x.dtype), label, torch.ones_like(x), kw["lambda_noobj"])
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
    a.set(xlabel="probability of ground truth class $p_t$", ylabel="loss", ylim=(0, 5))
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
    b.set(xlabel="probability of ground truth class $p_t$", ylabel="|∂L/∂x| ÷ |∂CE/∂x|", ylim=(0, 1.3))
    b.set_title("Effective weight of one example relative to cross-entropy", fontsize=10)
    b.legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    return _save(fig, out, "focal_loss_fig1")
