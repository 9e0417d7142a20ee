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
    """Tick labels of a family's settings: the label, ★ val-best, † paper default, the collapsed runs."""
    return [lab + (" ★" if b else "") + (" †" if d else "") + (f"\n({k} of {n} collapsed)" if k else "")
            for lab, b, d, k, n in zip(g["setting"], g["best"], g["default"], g["n_collapsed"], g["n"])]


def _ylim(ax) -> None:
    """The y range as drawn, within [0, 100] (and a hair around it)."""
    lo, hi = ax.get_ylim()
    ax.set_ylim(max(lo, -1), min(hi, 101))


def _yerr(mean, lo, hi) -> np.ndarray:
    """Error bars of intervals (in %) clipped to [0, 100]; none where an end is unknown."""
    mean, lo, hi = (np.asarray(x, dtype=float) for x in (mean, lo, hi))
    lo, hi = np.clip(lo, 0, 100), np.clip(hi, 0, 100)
    return np.nan_to_num(np.clip([mean - lo, hi - mean], 0, None))


def ablation(summary: pd.DataFrame, out: Path, grid_seeds: list[int]) -> list[Path]:
    """One panel per family: per grid setting, mean val mAP50 over the grid seeds (hollow, 95% t-interval) and mean test
    mAP50 over every run counted (filled, 95% t-interval), intervals within [0, 100]; collapsed runs counted below."""
    families = families_of(summary)
    fig, axes = plt.subplots(1, len(families), figsize=(4.7 * len(families), 4.4), sharey=True, squeeze=False)
    for ax, fam in zip(axes[0], families):
        g = summary[summary.family == fam].sort_values("order").reset_index(drop=True)
        x = np.arange(len(g))
        for split, dx, face in (("val", -0.12, "white"), ("test_all", 0.12, PALETTE[fam])):
            mean, lo, hi = (g[f"{split}_{k}"].to_numpy(dtype=float) for k in ("mean", "lo", "hi"))
            ax.errorbar(x + dx, mean, yerr=_yerr(mean, lo, hi), fmt="o", color=PALETTE[fam], mfc=face, capsize=3)
        default = g[g["default"]]
        if len(default):  # the paper default's test mean, the reference of the family's primary comparisons
            ax.axhline(float(default["test_all_mean"].iloc[0]), color=PALETTE[fam], ls=":", lw=1)
        ax.set_xticks(x, _setting_ticks(g), rotation=30, ha="right", fontsize=9)
        ax.set_xlabel(FAMILIES[fam].knob_label)
        ax.set_title(FAMILIES[fam].label, fontsize=11)
    _ylim(axes[0][0])  # shared by the panels: the range the points span (not from 0), within [0, 100]
    axes[0][0].set_ylabel("mAP@0.5 (%); axis not from 0")
    fig.legend(handles=[
        plt.Line2D([], [], marker="o", ls="", color="0.3", mfc="white",
                   label=f"val, seeds {','.join(map(str, grid_seeds))} (t 95%)"),
        plt.Line2D([], [], marker="o", ls="", color="0.3", label="test, all runs counted (t 95%)")],
        fontsize=8, loc="upper center", ncol=2, bbox_to_anchor=(0.5, 0.94), frameon=False)
    fig.suptitle("Grid of each family: val chooses (★ val-best, test on its other seeds), test reports; "
                 "† paper default (dotted: its test mean)", fontsize=11)
    fig.tight_layout(rect=(0, 0, 1, 0.92))
    return _save(fig, out, "ablation_mAP50")


def cross_family(study: pd.DataFrame, summary: pd.DataFrame, out: Path) -> list[Path]:
    """Each family's val-best (filled) and paper default (hollow; one point when they coincide): mean test mAP50 over
    the runs counted with its 95% t-interval within [0, 100], the runs as dots beside it. Points, not bars: the axis
    spans the values, not 0 to 100, so that differences of a point stay visible."""
    rows = summary[summary.best | summary.default]
    fig, ax = plt.subplots(figsize=(1.5 * len(rows) + 1.5, 4.4))
    labels = []
    for i, r in enumerate(rows.itertuples()):
        runs = study[study.prior & (study.family == r.family) & (study.label == r.setting) & study.seed.isin(r.seeds)]
        ax.errorbar(i, r.test_all_mean, yerr=_yerr([r.test_all_mean], [r.test_all_lo], [r.test_all_hi]),
                    fmt="o", ms=8, color=PALETTE[r.family], mfc=PALETTE[r.family] if r.best else "white", capsize=6)
        ax.scatter(np.full(len(runs), i + 0.18), 100 * runs["test_mAP50"].astype(float), color="0.3", zorder=3,
                   s=10)
        role = " = ".join(t for t, on in (("val-best", r.best), ("default", r.default)) if on)
        labels.append(f"{r.family}\n{r.setting}\n{role}\nseeds {','.join(map(str, r.seeds))}")
    ax.set_xticks(range(len(labels)), labels, fontsize=8)
    ax.set_xlim(-0.5, len(labels) - 0.5)
    ax.set(ylabel="test mAP@0.5 (%); axis not from 0")
    _ylim(ax)
    ax.set_title("Val-best (filled) and paper default (hollow) of each family: mean, 95% interval, dots = runs",
                 fontsize=10)
    fig.tight_layout()
    return _save(fig, out, "cross_family_mAP50")


def _mean_curve(runs: pd.DataFrame) -> pd.DataFrame:
    """``iter, mean, min, max`` of the val curves (in %) of ``runs`` at each validated iteration."""
    points = pd.DataFrame([{"iter": it, "v": 100 * v} for c in runs["val_curve"] for it, v in c],
                          columns=["iter", "v"])
    return points.groupby("iter")["v"].agg(["mean", "min", "max"]).reset_index()


def calibration(df: pd.DataFrame, cal: pd.DataFrame, cal_seeds: list[int], t_iters: int, out: Path) -> list[Path]:
    """One panel per family: val mAP50 against iteration of its paper default (solid) and val-best (dashed) over the
    calibration seeds, after the study's schedule of T (squares) and the complete schedule of 2T (circles, band: range
    over the seeds)."""
    families = list(dict.fromkeys(cal["family"]))
    fig, axes = plt.subplots(1, len(families), figsize=(4.7 * len(families), 4), squeeze=False)
    for ax, fam in zip(axes[0], families):
        for r in cal[cal.family == fam].itertuples():
            ls = "--" if r.role == "val-best" else "-"
            for suffix, marker, name in (("", "s", "T"), ("/2T", "o", "2T")):
                runs = df[(df.condition == r.condition + suffix) & df.seed.isin(cal_seeds)]
                m = _mean_curve(runs)
                ax.plot(m["iter"], m["mean"], marker=marker, ms=4, ls=ls, color=PALETTE[fam],
                        mfc="white" if name == "T" else PALETTE[fam], label=f"{r.setting} ({r.role}), {name}")
                if name == "2T":
                    ax.fill_between(m["iter"], m["min"], m["max"], color=PALETTE[fam], alpha=0.12)
        ax.axvline(t_iters, color="0.5", ls=":", lw=1)
        ax.set(xlabel="iteration")
        _ylim(ax)
        ax.set_title(f"{FAMILIES[fam].label}", fontsize=10)
        ax.legend(fontsize=7, loc="lower right")
    axes[0][0].set_ylabel("val mAP@0.5 (%)")
    fig.suptitle(f"Calibration: val mAP50 after T = {t_iters} (squares) and 2T = {2 * t_iters} iterations (circles), "
                 f"mean over seeds {','.join(map(str, cal_seeds))}", fontsize=10)
    fig.tight_layout()
    return _save(fig, out, "calibration_val_mAP50")


def sweep(table: pd.DataFrame, out: Path) -> list[Path]:
    """Test mAP50 against the measured share of positive anchors (log x): one colour per family,
    solid = paper default, dashed = val-best, error bars = combined 95% intervals.

    ``table``: one row per (profile, family, role) with ``point`` (how the profile's data differs), ``positive_share``,
    ``mean``, ``lo``, ``hi`` (over the runs that did not collapse), ``n`` and ``n_collapsed`` (written beside a point
    where a run collapsed); role ``both``: the val-best is the paper default (drawn solid).
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
                    ls="-" if role in ("default", "both") else "--", mfc="white" if role == "best" else PALETTE[fam],
                    label=f"{fam} {g['label'].iloc[0]} ({name})")
        for xi, m, k, n in zip(x, mean, g["n_collapsed"], g["n"]):
            if k:
                ax.annotate(f"{k} of {n}\ncollapsed", (xi, m), xytext=(-6, -40), textcoords="offset points",
                            color=PALETTE[fam], fontsize=7, ha="right", va="top")
    ax.set_xscale("log")
    ticks = table.drop_duplicates("profile")
    ax.minorticks_off()
    ax.set_xticks(100 * ticks["positive_share"],
                  [f"{100 * s:.3g}%\n({p})" for s, p in zip(ticks["positive_share"], ticks["point"], strict=True)])
    ax.set(xlabel="positive anchors (% of all anchors, measured; log scale)", ylabel="test mAP@0.5 (%)")
    ax.set_title("Foreground share sweep: mean over the seeds that did not collapse,\n"
                 "95% interval (seeds + test images)", fontsize=10)
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
