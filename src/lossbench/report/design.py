"""The study's pre-registered comparisons on a pooled-seed model, with collapse as its own endpoint.

Input: a tidy table of runs, one row per run, columns ``family, setting, seed, val, test`` (``setting`` a hashable
label, e.g. ``"gamma2.0_alpha0.25"``; ``val`` and ``test`` the final mAP50 in percent, [0, 100]), plus the design:
the selection seeds (the grid seeds on which each family's val-best was chosen by its mean val mAP50), each
family's val-best and paper default.

The statistical choices (each a parameter where there was one to make):

* **Primary family.** Fixed in advance by ``spec`` (params.yaml): per family the knob's effect, every other grid
  setting against the family's paper default (``{"within": family}``), and the val-bests across families, all
  pairs (``{"across": "val_best"}``). Holm's step-down correction (:func:`lossbench.report.stats.holm`) runs over
  the mAP comparisons of this family only; anything else is exploratory and outside it. Each interval is at its
  comparison's Holm level, so it excludes 0 exactly where Holm rejects.
* **Seed noise pooled per family.** A one-way linear model per family (setting a factor): cell means over every seed
  a setting has, one residual variance pooled over the family's settings (``df = N - k``). Families do not share a
  variance. Within a family ``se = sigma sqrt(1/n_a + 1/n_b)`` on ``N - k`` df; across two families
  ``se^2 = sigma_A^2/n_A + sigma_B^2/n_B`` with Welch–Satterthwaite df from the two pooled variances and their
  residual df.
* **Selection bias.** The cell a family chose (its val-best, whichever setting it is, its default included) uses only
  the seeds that did not choose it (seeds outside ``selection_seeds``) for its cell mean and its collapse count. Its
  selection-seed runs may still inform the pooled variance (``selection_runs_in_variance``, default True) as a
  stratum of their own, with their own mean: deviations from a group's mean are independent of that mean for
  normal runs (and of any other cell's mean), so selecting on means leaves them unbiased, while the biased mean is
  never used. The other cells' selection-seed runs were conditioned on losing the selection; that (smaller, and
  for the chosen-vs-default comparison conservative) bias is not corrected.
* **Collapse** (final val mAP50 below ``collapse_below``, 5 %) is its own endpoint: counts per cell, and for each
  primary comparison Fisher's exact test of the collapse rates (over the same eligible seeds), Holm-corrected as a
  family of its own over the comparisons where at least one run collapsed (a comparison with no collapse on either
  side has a degenerate conditional null, p = 1 whatever happens, and cannot reject: Tarone's exclusion). The mAP
  model uses non-collapsed runs only (cell means and pooled variance); a cell whose runs all collapsed has no mAP
  mean and its comparison is reported through the collapse test alone.
* **Ranges.** Every interval is intersected with the metric's range: a mean's with [0, 100], a difference's with
  [-100, 100]. The true value always lies in the range, so ``theta ∈ C`` exactly when ``theta ∈ C ∩ range``: the
  intersection keeps the coverage (:func:`lossbench.report.stats.bounded`).
* **Power.** For each comparison, the smallest true difference the two-sided t-test detects with probability
  ``power`` (80 %) at the Bonferroni level ``alpha / m`` (``m`` mAP comparisons with a p-value), from the measured
  pooled sigma(s) and the comparison's df (noncentral t). Bonferroni is the strictest Holm step, so this is an upper
  bound on what Holm detects.
* **Test-image noise.** Optionally ``boot_var[(family, setting)]``: the bootstrap-over-test-images variance of that
  cell's mean (the variance over resamples of the mean over the cell's seeds *as used here*: non-collapsed, chosen
  cell without its selection seeds), added to the standard error. For a difference, ``boot_diff_var[(family A,
  setting A, family B, setting B)]`` where given: the variance over resamples of the difference of the two cell
  means, each resample shared by both cells (paired: the cells are scored on the same test images, whose noise is
  positively correlated between them and largely cancels); otherwise both cells' terms are added (as for independent
  test sets, conservative on a shared one). The df stay those of the seed variance (the bootstrap variance is treated
  as known; ignoring it in the df is conservative).
"""

from __future__ import annotations

import math
from collections.abc import Collection, Hashable, Mapping, Sequence
from dataclasses import dataclass
from itertools import combinations
from typing import Any

import pandas as pd
from scipy import stats as st

from lossbench.report.stats import (
    CONFIDENCE,
    bounded,
    detectable_difference,
    fisher_collapse,
    holm,
    pooled_variance,
    t_interval,
    welch_df,
)

COLUMNS = ("family", "setting", "seed", "val", "test")
COLLAPSE_BELOW = 5.0  # final val mAP50 (percent) below which a run has collapsed
METRIC_RANGE = (0.0, 100.0)  # mAP in percent

Setting = Hashable


@dataclass(frozen=True)
class FamilyFit:
    """A family's one-way model: per setting (in order of first appearance) the cell mean, the number of runs and
    the seeds in it; the residual variance pooled over the family's cells and its degrees of freedom."""

    family: str
    settings: tuple[Setting, ...]
    means: dict[Setting, float]
    n: dict[Setting, int]
    seeds: dict[Setting, tuple[int, ...]]
    sigma2: float
    df: int

    @property
    def sigma(self) -> float:
        return math.sqrt(self.sigma2) if not math.isnan(self.sigma2) else math.nan


def check_runs(df: pd.DataFrame, metric: str = "test") -> pd.DataFrame:
    """The runs table with its columns checked: ``family, setting, seed, val`` and ``metric``, one run per
    ``(family, setting, seed)``. Returns a copy with ``seed`` as int and ``val``/``metric`` as float."""
    need = ["family", "setting", "seed", "val", metric]
    missing = [c for c in need if c not in df.columns]
    if missing:
        raise ValueError(f"runs table lacks columns {missing}")
    runs = df.copy()
    runs["seed"] = runs["seed"].astype(int)
    runs["val"] = runs["val"].astype(float)
    runs[metric] = runs[metric].astype(float)
    dup = runs.duplicated(["family", "setting", "seed"], keep=False)
    if dup.any():
        repeated = runs.loc[dup, ["family", "setting", "seed"]].values.tolist()
        raise ValueError(f"runs table has repeated runs: {repeated}")
    return runs


def _settings(runs: pd.DataFrame) -> tuple[Setting, ...]:
    return tuple(dict.fromkeys(runs["setting"]))


def family_model(runs: pd.DataFrame, metric: str = "test", exclude: Mapping[Setting, Collection[int]] | None = None,
                 excluded_in_variance: bool = True, collapse_below: float | None = None) -> FamilyFit:
    """Fit one family's one-way model on ``metric``.

    Args:
        runs: the family's runs (columns as :func:`check_runs`; one family).
        metric: the column modelled (``"test"``).
        exclude: per setting, seeds left out of that cell's mean (the chosen cell's selection seeds).
        excluded_in_variance: whether those excluded runs still enter the pooled variance, as a group of their own
            (about their own mean, adding ``n_excluded - 1`` df); else they are dropped altogether.
        collapse_below: if given, runs whose ``val`` is below it (or NaN) are left out entirely (collapsed).

    Runs with a NaN ``metric`` are dropped. A cell with no runs left keeps its place with ``n = 0``, mean NaN.
    ``sigma2`` is NaN (and ``df`` 0) when no cell has two runs.
    """
    runs = check_runs(runs, metric)
    families = runs["family"].unique()
    if len(families) != 1:
        raise ValueError(f"family_model: one family at a time, got {list(families)}")
    settings = _settings(runs)
    if collapse_below is not None:
        runs = runs[runs["val"] >= collapse_below]
    runs = runs[runs[metric].notna()]
    exclude = exclude or {}
    unknown = set(exclude) - set(settings)
    if unknown:
        raise ValueError(f"family_model: exclusions for unknown settings {sorted(map(str, unknown))}")
    means, n, seeds, groups = {}, {}, {}, []
    for s in settings:
        cell = runs[runs["setting"] == s]
        held = cell["seed"].isin(set(exclude.get(s, ())))
        used = cell[~held].sort_values("seed")
        values = used[metric].to_numpy(dtype=float)
        means[s] = float(values.mean()) if len(values) else math.nan
        n[s] = len(values)
        seeds[s] = tuple(int(x) for x in used["seed"])
        groups.append(values)
        if excluded_in_variance and held.any():
            groups.append(cell.loc[held, metric].to_numpy(dtype=float))
    sigma2, df = pooled_variance(groups)
    return FamilyFit(str(families[0]), settings, means, n, seeds, sigma2, df)


def _exclusions(family: str, val_best: Mapping[str, Setting] | None,
                selection_seeds: Collection[int] | None) -> dict[Setting, set[int]]:
    """The chosen cell (the family's val-best) loses its selection seeds."""
    if not val_best or family not in val_best or not selection_seeds:
        return {}
    return {val_best[family]: set(selection_seeds)}


def _eligible(runs: pd.DataFrame, family: str, setting: Setting, excluded: Collection[int]) -> pd.DataFrame:
    """Runs of a cell that may enter its comparisons: not an excluded (selection) seed, val known."""
    cell = runs[(runs["family"] == family) & (runs["setting"] == setting)]
    return cell[~cell["seed"].isin(set(excluded)) & cell["val"].notna()].sort_values("seed")


def _verdict(lo: float, hi: float) -> str:
    if math.isnan(lo) or math.isnan(hi) or lo <= 0 <= hi:
        return "not resolved"
    return "A > B" if lo > 0 else "A < B"


COMPARISON_COLUMNS = [
    "kind", "family", "family_a", "a", "family_b", "b",
    "n_a", "n_b", "seeds_a", "seeds_b", "mean_a", "mean_b", "diff", "se", "df", "p", "p_holm", "level", "lo", "hi",
    "verdict", "sigma_a", "sigma_b", "alpha_power", "detectable",
    "collapsed_a", "n_a_all", "collapsed_b", "n_b_all", "p_collapse", "p_collapse_holm",
]


Pair = tuple[str, str, Setting, str, Setting]  # kind, family A, setting A, family B, setting B


def _pairs(spec: Sequence[Mapping[str, Any]], settings: Mapping[str, tuple[Setting, ...]],
           val_best: Mapping[str, Setting], default: Mapping[str, Setting]) -> list[Pair]:
    pairs = []
    for item in spec:
        if "within" in item:
            f = item["within"]
            if f not in settings:
                raise ValueError(f"spec: family {f!r} has no runs")
            if f not in default:
                raise ValueError(f"spec: family {f!r} has no default")
            d = default[f]
            if d not in settings[f]:
                raise ValueError(f"spec: the default {d!r} of {f!r} has no runs")
            pairs += [("within", f, s, f, d) for s in settings[f] if s != d]
        elif "across" in item:
            which = {"val_best": val_best, "default": default}.get(item["across"])
            if which is None:
                raise ValueError(f"spec: across must be 'val_best' or 'default', got {item['across']!r}")
            families = list(item.get("families", which))
            for f in families:
                if f not in which or f not in settings or which[f] not in settings[f]:
                    raise ValueError(f"spec: no {item['across']} runs for family {f!r}")
            pairs += [("across", fa, which[fa], fb, which[fb]) for fa, fb in combinations(families, 2)]
        else:
            raise ValueError(f"spec entries are {{'within': family}} or {{'across': 'val_best'}}, got {item!r}")
    return pairs


def primary_comparisons(df: pd.DataFrame, spec: Sequence[Mapping[str, Any]], selection_seeds: Collection[int],
                        val_best: Mapping[str, Setting], default: Mapping[str, Setting],
                        alpha: float = 1 - CONFIDENCE, power: float = 0.8,
                        collapse_below: float = COLLAPSE_BELOW, metric: str = "test",
                        boot_var: Mapping[tuple[str, Setting], float] | None = None,
                        selection_runs_in_variance: bool = True,
                        boot_diff_var: Mapping[tuple[str, Setting, str, Setting], float] | None = None) -> pd.DataFrame:
    """The primary comparisons ``A - B`` on ``metric``, one row each, in ``spec`` order.

    ``spec``: ``[{"within": "focal"}, ..., {"across": "val_best"}]``. ``within``: each other grid setting of the
    family (in the order of the runs table) as A against the family's default as B. ``across``: the val-bests (or,
    with ``{"across": "default"}``, the defaults) of every pair of families, in the order of ``families`` if given
    (``{"across": "val_best", "families": [...]}``) else of ``val_best``; the earlier family is A.

    See the module docstring for the model. Columns: ``kind`` (within/across), ``family`` (``focal`` or
    ``focal vs ohem``), ``family_a, a, family_b, b``; ``n_a, n_b, seeds_a, seeds_b`` the non-collapsed runs in each
    mean; ``mean_a, mean_b, diff, se, df``; ``p`` (two-sided t), ``p_holm``, ``level`` (Holm's, per comparison);
    ``lo, hi`` the interval at ``level`` bounded to [-100, 100]; ``verdict`` ``A > B`` / ``A < B`` where it excludes
    0, ``not resolved`` where it crosses 0 (with the reason where there is no mAP test); ``sigma_a, sigma_b`` the
    pooled seed sds; ``alpha_power`` (= alpha / m, Bonferroni) and ``detectable`` (the smallest difference, in points,
    detected with ``power`` at that level); ``collapsed_a, n_a_all, collapsed_b, n_b_all`` collapsed and all eligible
    runs; ``p_collapse`` (Fisher, two-sided) and ``p_collapse_holm``.
    """
    runs = check_runs(df, metric)
    boot_var = boot_var or {}
    selection_seeds = set(selection_seeds)
    settings = {f: _settings(g) for f, g in runs.groupby("family", sort=False)}
    pairs = _pairs(spec, settings, val_best, default)
    fits = {f: family_model(runs[runs["family"] == f], metric, _exclusions(f, val_best, selection_seeds),
                            selection_runs_in_variance, collapse_below)
            for f in dict.fromkeys(x for _, fa, _, fb, _ in pairs for x in (fa, fb))}

    rows = []
    for kind, fa, a, fb, b in pairs:
        fit_a, fit_b = fits[fa], fits[fb]
        n_a, n_b = fit_a.n[a], fit_b.n[b]
        mean_a, mean_b = fit_a.means[a], fit_b.means[b]
        extra = (boot_diff_var or {}).get((fa, a, fb, b))
        if extra is None:
            extra = boot_var.get((fa, a), 0.0) + boot_var.get((fb, b), 0.0)
        if kind == "within":
            seed_var = fit_a.sigma2 * (1 / n_a + 1 / n_b) if n_a and n_b else math.nan
            dof = float(fit_a.df) if fit_a.df > 0 else math.nan
            sigma: float | tuple[float, float] = fit_a.sigma
        else:
            v_a = fit_a.sigma2 / n_a if n_a else math.nan
            v_b = fit_b.sigma2 / n_b if n_b else math.nan
            seed_var = v_a + v_b
            dof = welch_df(fit_a.sigma2, n_a, fit_b.sigma2, n_b, df_a=fit_a.df, df_b=fit_b.df)
            sigma = (fit_a.sigma, fit_b.sigma)
        se = math.sqrt(seed_var + extra) if not math.isnan(seed_var) else math.nan
        diff = mean_a - mean_b
        if math.isnan(diff) or math.isnan(se) or math.isnan(dof):
            p = math.nan
        elif se == 0:
            p = 1.0 if diff == 0 else 0.0
        else:
            p = float(2 * st.t.sf(abs(diff) / se, dof))
        elig_a = _eligible(runs, fa, a, _exclusions(fa, val_best, selection_seeds).get(a, ()))
        elig_b = _eligible(runs, fb, b, _exclusions(fb, val_best, selection_seeds).get(b, ()))
        k_a, k_b = int((elig_a["val"] < collapse_below).sum()), int((elig_b["val"] < collapse_below).sum())
        rows.append({
            "kind": kind, "family": fa if kind == "within" else f"{fa} vs {fb}", "family_a": fa, "a": a,
            "family_b": fb, "b": b, "n_a": n_a, "n_b": n_b, "seeds_a": fit_a.seeds[a], "seeds_b": fit_b.seeds[b],
            "mean_a": mean_a, "mean_b": mean_b, "diff": diff, "se": se, "df": dof, "p": p,
            "sigma_a": fit_a.sigma, "sigma_b": fit_b.sigma, "_sigma": sigma, "_extra": extra,
            "collapsed_a": k_a, "n_a_all": len(elig_a), "collapsed_b": k_b, "n_b_all": len(elig_b),
            "p_collapse": fisher_collapse(k_a, len(elig_a), k_b, len(elig_b)),
        })

    adjusted, levels = holm([r["p"] for r in rows], alpha=alpha) if rows else ([], [])
    m = sum(not math.isnan(r["p"]) for r in rows)
    # Tarone: a comparison without any collapse cannot reject; it stays out of the collapse family's m
    informative = [r["p_collapse"] if r["collapsed_a"] + r["collapsed_b"] > 0 else math.nan for r in rows]
    collapse_adj, _ = holm(informative, alpha=alpha) if rows else ([], [])
    for r, p_adj, level, pc_adj in zip(rows, adjusted, levels, collapse_adj):
        r["p_holm"], r["level"] = p_adj, level
        no_collapse = math.isnan(pc_adj) and not math.isnan(r["p_collapse"])
        r["p_collapse_holm"] = 1.0 if no_collapse else pc_adj
        r["alpha_power"] = alpha / m if m else math.nan
        sigma, extra = r.pop("_sigma"), r.pop("_extra")
        if math.isnan(r["p"]):
            r["lo"] = r["hi"] = r["detectable"] = math.nan
            r["verdict"] = f"not resolved ({_why_no_test(r, fits)})"
            continue
        half = float(st.t.ppf((1 + level) / 2, r["df"])) * r["se"]
        r["lo"], r["hi"] = bounded(r["diff"] - half, r["diff"] + half, -METRIC_RANGE[1], METRIC_RANGE[1])
        r["verdict"] = _verdict(r["lo"], r["hi"])
        r["detectable"] = detectable_difference(sigma, r["n_a"], r["n_b"], r["df"], r["alpha_power"], power,
                                                extra_var=extra)
    return pd.DataFrame(rows, columns=COMPARISON_COLUMNS)


def _why_no_test(r: Mapping[str, Any], fits: Mapping[str, FamilyFit]) -> str:
    for side in ("a", "b"):
        if r[f"n_{side}"] == 0:
            if r[f"n_{side}_all"] == 0:
                return f"{side.upper()} has no eligible run"
            return f"{side.upper()}: every run collapsed, see the collapse test"
    return "no seed variance: no cell has two non-collapsed runs"


SUMMARY_COLUMNS = ["family", "setting", "chosen", "seeds", "n", "n_collapsed", "mean_all", "lo_all", "hi_all",
                   "n_ok", "mean_ok", "lo_ok", "hi_ok", "sigma_ok", "df_ok"]


def setting_summary(df: pd.DataFrame, collapse_below: float = COLLAPSE_BELOW, metric: str = "test",
                    confidence: float = CONFIDENCE, selection_seeds: Collection[int] | None = None,
                    val_best: Mapping[str, Setting] | None = None,
                    boot_var: Mapping[tuple[str, Setting], float] | None = None,
                    selection_runs_in_variance: bool = True) -> pd.DataFrame:
    """Per setting: runs, collapses, the all-run and the non-collapsed mean of ``metric`` with intervals in [0, 100].

    With ``selection_seeds`` and ``val_best`` the chosen cells are summarised over their other seeds only (as in
    :func:`primary_comparisons`); ``seeds`` lists the runs counted. ``n``, ``n_collapsed``: runs and collapsed runs
    (val below ``collapse_below``). ``mean_all, lo_all, hi_all``: every run's ``metric`` (collapsed included), the
    setting's own t-interval (pooling would spread one setting's collapses over its family). ``mean_ok, lo_ok,
    hi_ok``: the non-collapsed runs, the interval of the family's pooled model (the one the comparisons use:
    ``mean ± t_{df_ok} sqrt(sigma_ok^2 / n_ok + boot_var)``). Intervals at ``confidence``, bounded to [0, 100]
    (which keeps their coverage); NaN where they cannot be computed.
    """
    runs = check_runs(df, metric)
    boot_var = boot_var or {}
    rows = []
    q = 0.5 + confidence / 2
    for f, fam in runs.groupby("family", sort=False):
        excl = _exclusions(str(f), val_best, selection_seeds)
        fit = family_model(fam, metric, excl, selection_runs_in_variance, collapse_below)
        for s in fit.settings:
            cell = _eligible(runs, str(f), s, excl.get(s, ()))
            mean_all, _, lo_all, hi_all = t_interval(cell[metric].tolist(), confidence=confidence)
            lo_all, hi_all = bounded(lo_all, hi_all, *METRIC_RANGE)
            mean_ok, n_ok = fit.means[s], fit.n[s]
            lo_ok = hi_ok = math.nan
            if n_ok and fit.df > 0:
                half = float(st.t.ppf(q, fit.df)) * math.sqrt(fit.sigma2 / n_ok + boot_var.get((f, s), 0.0))
                lo_ok, hi_ok = bounded(mean_ok - half, mean_ok + half, *METRIC_RANGE)
            rows.append({"family": f, "setting": s, "chosen": s in excl, "seeds": tuple(int(x) for x in cell["seed"]),
                         "n": len(cell), "n_collapsed": int((cell["val"] < collapse_below).sum()),
                         "mean_all": mean_all, "lo_all": lo_all, "hi_all": hi_all, "n_ok": n_ok, "mean_ok": mean_ok,
                         "lo_ok": lo_ok, "hi_ok": hi_ok, "sigma_ok": fit.sigma, "df_ok": fit.df})
    return pd.DataFrame(rows, columns=SUMMARY_COLUMNS)

