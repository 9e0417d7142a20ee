"""The imbalance sweep: each family's paper default and val-best retrained on synth profiles whose share of positive
anchors differs while positive exposure is held fixed (the same scene of labelled objects per image and the same batch
on canvases of different size: only the background area and its anchors grow), test mAP50 against the measured share
of positive anchors.

Reads params.yaml's ``sweep`` (``profiles``: one synth profile per point; ``seeds``; ``runs``: ``{family, choose}``),
the runs ``RUNS/<profile>/<choose>/<family>/seed<k>/`` (``default``: the paper default; ``best``: the main grid's
val-best from the selection file; when the two are one setting, one of each pair is kept after checking that they agree)
and ``DATA/<profile>/raw/stats.json`` (canvas, objects per image, anchors per image, measured positive share). Each
profile is its own test set: its own bootstrap, its own row in the tables. Test mAP50 is in % (points) throughout, every
interval of a mean bounded to [0, 100] and of a difference to [-100, 100] (:func:`lossbench.report.stats.bounded`).

Collapse (final val mAP50 below params.yaml's ``comparisons.collapse_below``, as in the study's report) is its own
endpoint: counted per cell, and kept out of every mAP50 model, so that a run that learned nothing does not pass for seed
noise. Each cell gives the all-run mean beside the mean over its runs that did not collapse.

Two analyses, both on the runs that did not collapse: at each point the paper defaults are compared across families,
paired by seed over the seeds where neither collapsed (:func:`compare`), one Holm family over every point, each pair
with Fisher's exact test of its collapse counts beside it; and the family x share interaction
(:func:`interaction_test`): an OLS of per-run test mAP50 on family x log10(1 / positive share) against the additive
model, separately for the paper defaults and the val-bests (the two F-tests Holm-corrected together), with each
family's slope in points per 10x rarer.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats as st

from lossbench.families import FAMILY_ORDER, setting_key, setting_label, slug
from lossbench.report import figures, stats, tables
from lossbench.report.build import provenance
from lossbench.report.collect import ROLES, ReportError, bootstrap, keep_once, paper_defaults, read_run
from lossbench.report.design import METRIC_RANGE
from lossbench.report.stats import fisher_collapse
from lossbench.utils import atomic_path, read_json

ROLE_LABEL = {"default": "paper default", "best": "val-best", "both": "paper default = val-best"}
CONFIDENCE = stats.CONFIDENCE
#: the two sets of runs the interaction is tested on: name -> the roles that belong to it (``both``: the val-best is
#: the paper default, so its runs are in each set)
INTERACTION_SETS = {"paper defaults": ("default", "both"), "val-bests": ("best", "both")}
#: the measured positive share should span at least this factor across the sweep's points (docs/study.md)
SHARE_SPAN_GOAL = 10.0
#: labelled objects per step that differ by at most this fraction across the points count as the same exposure (a
#: generator that drops the rare object finding no room leaves 3.99 per image where 4 are asked)
EXPOSURE_TOLERANCE = 0.01


def combined(per_seed: Sequence[float], boot: np.ndarray, confidence: float = CONFIDENCE,
             limit: tuple[float, float] = METRIC_RANGE) -> tuple[float, float, float, float]:
    """``(mean, lo, hi, p)`` over seeds with image noise: ``per_seed`` (n,), ``boot`` (n_boot, n), in points; the
    interval intersected with ``limit`` (the parameter's range, which keeps the coverage)."""
    mean, lo, hi, p = map(float, stats.combined_interval(per_seed, boot, confidence=confidence))
    return (mean, *stats.bounded(lo, hi, *limit), p)


def arm(df: pd.DataFrame, condition: str) -> dict[int, int]:
    """seed -> row position of ``condition``'s runs; ``df`` has a RangeIndex, so a position is also the run's column
    in the bootstrap matrix."""
    g = df[df["condition"] == condition]
    return {int(s): int(i) for s, i in zip(g["seed"], g.index)}


def verdict(lo: float, hi: float) -> str:
    """``A > B`` / ``A < B`` where the interval of A − B excludes 0, else ``not resolved``."""
    if math.isnan(lo) or math.isnan(hi) or lo <= 0 <= hi:
        return "not resolved"
    return "A > B" if lo > 0 else "A < B"


COMPARISON_COLUMNS = ["group", "A", "B", "n", "seeds", "diff", "lo", "hi", "level", "p", "p_holm", "verdict"]


def compare(pairs: Sequence[tuple[str, str, dict[int, int], str, dict[int, int]]],
            values: np.ndarray, boot: np.ndarray, limit: float = METRIC_RANGE[1],
            require_common: bool = True) -> pd.DataFrame:
    """Paired test-mAP50 differences A − B over common seeds, Holm-corrected together.

    ``pairs``: ``(group, name_a, arm_a, name_b, arm_b)`` with arms seed -> run position; ``values`` (n_runs,) the runs'
    test mAP50, ``boot`` (n_boot, n_runs) their bootstrap. Per pair: per-seed differences and ``boot_a − boot_b`` (same
    replicates) go into the combined interval; its p-values are Holm-corrected (family-wise 1 − CONFIDENCE) and each
    interval is recomputed at the level Holm tests that pair at (``level``), so it excludes 0 exactly when Holm rejects.
    Intervals are bounded to ``[-limit, limit]`` (the range of a difference of two values in ``[0, limit]``). A pair
    without a common seed is an error, or with ``require_common=False`` a row without a difference (``n`` 0).
    """
    prepared = []
    for group, na, a, nb, b in pairs:
        common = sorted(set(a) & set(b))
        if not common and require_common:
            raise ReportError(f"{na} vs {nb}: no common seed")
        pa, pb = [a[s] for s in common], [b[s] for s in common]
        prepared.append((group, na, nb, common, values[pa] - values[pb], boot[:, pa] - boot[:, pb]))
    # a single seed says nothing about seed noise: no interval, no test (left out of Holm's m)
    pvalues = [stats.combined_interval(d, bd)[3] if len(d) >= 2 else math.nan for *_, d, bd in prepared]
    adjusted, levels = stats.holm(pvalues, alpha=1 - CONFIDENCE) if prepared else ([], [])
    rows = []
    for (group, na, nb, common, d, bd), p, p_adj, level in zip(prepared, pvalues, adjusted, levels):
        row = {"group": group, "A": na, "B": nb, "n": len(common), "seeds": ",".join(map(str, common))}
        if len(common) < 2:
            rows.append({**row, "diff": float(d.mean()) if len(d) else math.nan, "lo": math.nan, "hi": math.nan,
                         "level": math.nan, "p": math.nan, "p_holm": math.nan,
                         "verdict": "not resolved (one seed)" if len(d) else "not resolved (no common seed)"})
            continue
        mean, lo, hi, _ = combined(d, bd, confidence=level, limit=(-limit, limit))
        rows.append({**row, "diff": mean, "lo": lo, "hi": hi, "level": level, "p": float(p), "p_holm": p_adj,
                     "verdict": verdict(lo, hi)})
    return pd.DataFrame(rows, columns=COMPARISON_COLUMNS)


def comparison_sentence(r: pd.Series) -> str:
    """One comparison row in words, its verdict verbatim from the table; the collapse counts where a run collapsed."""
    seeds = f"{r['n']} seed{'' if r['n'] == 1 else 's'}"
    if math.isnan(r["lo"]):
        diff = "no difference" if math.isnan(r["diff"]) else f"A − B = {r['diff']:+.1f} points, no interval"
        text = f"{r['A']} vs {r['B']} ({r['group']}, {seeds}): {diff}: **{r['verdict']}**"
    else:
        text = (f"{r['A']} vs {r['B']} ({r['group']}, {seeds}): A − B = {r['diff']:+.1f} "
                f"points [{r['lo']:+.1f}, {r['hi']:+.1f}] at {100 * r['level']:.2f}%, "
                f"Holm p {r['p_holm']:.3f}: **{r['verdict']}**")
    if r.get("collapsed_a", 0) + r.get("collapsed_b", 0) > 0:
        text += (f"; collapsed {r['collapsed_a']} of {r['n_a_all']} against {r['collapsed_b']} of {r['n_b_all']}, "
                 f"Fisher p {r['p_collapse']:.3f}, Holm p {r['p_collapse_holm']:.3f}")
    return text


def comparison_tables(comp: pd.DataFrame, caption: str) -> dict[str, str]:
    """``{suffix: text}`` of :func:`compare`'s rows: A − B [interval at the Holm level]; with
    :func:`sweep_comparisons`' collapse columns, the collapse counts and their Fisher test."""
    t = pd.DataFrame({
        "group": comp["group"], "A": comp["A"], "B": comp["B"], "seeds": comp["n"].astype(str),
        "A − B (pts)": [tables.num(d, "{:+.1f}") for d in comp["diff"]],
        "interval at Holm level (pts)": ["n/a" if math.isnan(lo) else
                                         f"[{lo:+.1f}, {hi:+.1f}] ({tables.level_text(lv)})"
                                         for lo, hi, lv in zip(comp["lo"], comp["hi"], comp["level"])],
        "Holm p": [tables.num(p, "{:.3f}") for p in comp["p_holm"]], "verdict": comp["verdict"]})
    if "p_collapse" in comp:
        t["collapsed A; B"] = [f"{r.collapsed_a} of {r.n_a_all}; {r.collapsed_b} of {r.n_b_all}"
                               for r in comp.itertuples()]
        t["collapse Fisher p (Holm)"] = [f"{r.p_collapse:.3f} ({r.p_collapse_holm:.3f})" for r in comp.itertuples()]
    return tables.texts(t, 3, caption, comp)


# --- the family x share interaction ----------------------------------------------------------------------------------

def _ols(X: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, float] | None:
    """``(coefficients, residual sum of squares)`` of the least-squares fit of ``y`` on the columns of ``X``, or None
    where ``X`` has not full column rank (a coefficient is not estimable)."""
    if X.shape[0] < X.shape[1] or np.linalg.matrix_rank(X) < X.shape[1]:
        return None
    beta = np.linalg.lstsq(X, y, rcond=None)[0]
    resid = y - X @ beta
    return beta, float(resid @ resid)


def interaction_test(y: Sequence[float], family: Sequence[str], x: Sequence[float],
                     confidence: float = CONFIDENCE) -> dict[str, Any]:
    """Does the slope of ``y`` on ``x`` differ between families? An F-test of the interaction.

    ``y`` (N,): one value per run (test mAP50, points); ``family`` (N,): its family (any label; categorical, in order
    of appearance); ``x`` (N,): the run's covariate (log10 of 1 / the positive share: +1 = 10x rarer). With ``k``
    families::

        full      y = a_f + b_f x + e    (one intercept and one slope per family: 2k coefficients)
        additive  y = a_f + b x + e      (one common slope: k + 1 coefficients)
        F = ((RSS_add − RSS_full) / (k − 1)) / (RSS_full / (N − 2k)),  df (k − 1, N − 2k),
        p = P(F_{k−1, N−2k} > F)

    and each family's slope ``b_f`` of the full model, ``se_f = sqrt(s² (XᵀX)⁻¹_ff)`` with ``s² = RSS_full / (N − 2k)``
    (pooled over families), interval ``b_f ∓ t_{N−2k, (1+confidence)/2} se_f``.

    Returns ``{"families", "n", "df1", "df2", "F", "p", "rss_full", "rss_add", "slopes": {family: {"slope", "lo",
    "hi", "se", "n"}}}``; NaN where not estimable: F and p with one family, and everything where a family has a single
    distinct ``x`` (no slope) or there is no residual degree of freedom (N ≤ 2k). With ``RSS_full = 0``: F = inf (p = 0)
    when the additive model fits worse, else NaN.
    """
    y, x = np.asarray(y, dtype=float), np.asarray(x, dtype=float)
    family = list(family)
    if not len(y) == len(x) == len(family):
        raise ValueError(f"interaction_test: y, family and x differ in length ({len(y)}, {len(family)}, {len(x)})")
    fams = list(dict.fromkeys(family))
    k, n = len(fams), len(y)
    D = np.array([[f == g for g in fams] for f in family], dtype=float).reshape(n, k)  # (N, k) one-hot
    out: dict[str, Any] = {"families": fams, "n": n, "df1": k - 1, "df2": n - 2 * k, "F": math.nan, "p": math.nan,
                           "rss_full": math.nan, "rss_add": math.nan,
                           "slopes": {f: {"slope": math.nan, "lo": math.nan, "hi": math.nan, "se": math.nan,
                                          "n": int(sum(g == f for g in family))} for f in fams}}
    X_full = np.hstack([D, D * x[:, None]])
    full = _ols(X_full, y) if k else None
    if full is None or n - 2 * k < 1:
        return out
    beta, rss_full = full
    df2 = n - 2 * k
    s2 = rss_full / df2
    cov = s2 * np.linalg.inv(X_full.T @ X_full)
    t = float(st.t.ppf((1 + confidence) / 2, df2))
    for j, f in enumerate(fams):
        b, se = float(beta[k + j]), math.sqrt(max(float(cov[k + j, k + j]), 0.0))
        out["slopes"][f].update(slope=b, lo=b - t * se, hi=b + t * se, se=se)
    out["rss_full"] = rss_full
    if k < 2:
        return out
    # nested in the full model, whose full rank means every family has two distinct x: full rank too
    rss_add = _ols(np.hstack([D, x[:, None]]), y)[1]
    gain = max(rss_add - rss_full, 0.0)  # never negative in exact arithmetic (the additive model is nested)
    out["rss_add"] = rss_add
    if rss_full > 0:
        out["F"] = (gain / (k - 1)) / s2
        out["p"] = float(st.f.sf(out["F"], k - 1, df2))
    elif gain > 0:
        out["F"], out["p"] = math.inf, 0.0
    return out


def rarity(share: float) -> float:
    """Decades of rarity of a positive share: log10(1 / share) (+1 = positives 10x rarer)."""
    return -math.log10(share)


INTERACTION_COLUMNS = ["set", "runs", "collapsed", "families", "df1", "df2", "F", "p", "p_holm", "verdict"]
SLOPE_COLUMNS = ["set", "family", "role", "label", "runs", "slope", "lo", "hi", "se", "df"]


def sweep_interaction(df: pd.DataFrame, values: np.ndarray) -> tuple[pd.DataFrame, pd.DataFrame]:
    """:func:`interaction_test` of per-run test mAP50 (``values``, points, aligned with ``df``) on family x
    log10(1 / positive share) over the runs that did not collapse (``df["collapsed"]`` False), for each of
    :data:`INTERACTION_SETS` (the paper defaults; the val-bests), the two p-values Holm-corrected together. Returns
    ``(tests, slopes)``: one row per set (``collapsed``: the runs of the set left out), one per (set, family)."""
    tests, slopes = [], []
    for name, roles in INTERACTION_SETS.items():
        every = df[df["role"].isin(roles)]
        g = every[~every["collapsed"]]
        if g.empty:
            continue
        res = interaction_test(values[g.index.to_numpy()], g["family"].tolist(),
                               [rarity(s) for s in g["positive_share"]])
        tests.append({"set": name, "runs": res["n"], "collapsed": len(every) - len(g),
                      "families": len(res["families"]), "df1": res["df1"], "df2": res["df2"], "F": res["F"],
                      "p": res["p"]})
        for fam in res["families"]:
            first, fit = g[g["family"] == fam].iloc[0], res["slopes"][fam]
            slopes.append({"set": name, "family": fam, "role": first["role"], "label": first["label"],
                           "runs": fit["n"], "slope": fit["slope"], "lo": fit["lo"], "hi": fit["hi"], "se": fit["se"],
                           "df": res["df2"]})
    adjusted, _ = stats.holm([t["p"] for t in tests], alpha=1 - CONFIDENCE)
    for t, p_adj in zip(tests, adjusted):
        t["p_holm"] = p_adj
        t["verdict"] = ("not estimable" if math.isnan(t["p"]) else
                        "slopes differ" if p_adj <= 1 - CONFIDENCE else "not resolved")
    return pd.DataFrame(tests, columns=INTERACTION_COLUMNS), pd.DataFrame(slopes, columns=SLOPE_COLUMNS)


def interaction_tables(tests: pd.DataFrame, slopes: pd.DataFrame) -> dict[str, dict[str, str]]:
    """``{"sweep_interaction": {suffix: text}, "sweep_slopes": {suffix: text}}``."""
    t = pd.DataFrame({"runs of": tests["set"], "runs": tests["runs"].astype(str),
                      "collapsed (left out)": tests["collapsed"].astype(str),
                      "families": tests["families"].astype(str),
                      "interaction F (df)": ["n/a" if math.isnan(r.F) else f"{r.F:.2f} ({r.df1}, {r.df2})"
                                             for r in tests.itertuples()],
                      "p": [tables.num(p, "{:.3f}") for p in tests["p"]],
                      "Holm p": [tables.num(p, "{:.3f}") for p in tests["p_holm"]], "verdict": tests["verdict"]})
    caption = ("Family x share interaction: OLS of per-run test mAP50 (points) on family (categorical) x log10(1 / "
               "measured positive share) over the runs that did not collapse, F-test of the family-specific slopes "
               "against one common slope (the additive model); the two tests Holm-corrected together (family-wise "
               "95%). slopes differ: Holm p <= 0.05; not resolved otherwise.")
    s = pd.DataFrame({"runs of": slopes["set"], "family": slopes["family"], "setting": slopes["label"],
                      "runs": slopes["runs"].astype(str),
                      "slope (pts per 10x rarer)": [tables.ci(r.slope, r.lo, r.hi, "{:+.1f}")
                                                    for r in slopes.itertuples()]})
    s_caption = ("Per-family slope of test mAP50 on log10(1 / positive share), points per 10x rarer positives (full "
                 "model of the interaction test), 95% t-interval on the model's pooled residual variance (its "
                 "residual df); not corrected for multiplicity.")
    return {"sweep_interaction": tables.texts(t, 3, caption, tests),
            "sweep_slopes": tables.texts(s, 4, s_caption, slopes)}


def sweep_design(params: Mapping[str, Any], selection: Mapping[str, Any],
                 selection_path: str | Path) -> dict[str, list[tuple[str, dict[str, Any]]]]:
    """family -> ``[(role, setting)]`` the sweep trains, from ``sweep.runs``: the paper default
    and the selection's val-best. Every family needs its ``default``; its ``best`` may be left
    out only when the val-best is the paper default."""
    sweep = params.get("sweep")
    if not isinstance(sweep, Mapping):
        raise ReportError("params: missing the 'sweep' section")
    listed = sweep.get("runs")
    if not isinstance(listed, list) or not all(isinstance(r, Mapping) for r in listed):
        raise ReportError(f"params: sweep.runs must list {{family, choose}} mappings, got {listed!r}")
    pairs = {(r.get("family"), r.get("choose")) for r in listed}
    bad = sorted(p for p in pairs if p[0] not in FAMILY_ORDER or p[1] not in ROLES)
    if bad:
        raise ReportError(f"params: sweep.runs has entries {bad}; family must be one of "
                          f"{list(FAMILY_ORDER)} and choose one of {list(ROLES)}")
    defaults = paper_defaults(params)
    out = {}
    for fam in [f for f in FAMILY_ORDER if any(p[0] == f for p in pairs)]:
        best = ((selection.get("families") or {}).get(fam) or {}).get("best")
        if not isinstance(best, Mapping):
            raise ReportError(f"{selection_path}: no families.{fam}.best")
        if (fam, "default") not in pairs:
            raise ReportError(f"params: sweep.runs lacks {{family: {fam}, choose: default}}")
        if (fam, "best") not in pairs and setting_key(fam, best) != setting_key(fam, defaults[fam]):
            raise ReportError(f"params: sweep.runs lacks {{family: {fam}, choose: best}}, but the val-best in "
                              f"{selection_path} ({json.dumps(best)}) is not the paper default")
        out[fam] = [("default", defaults[fam])] + ([("best", dict(best))] if (fam, "best") in pairs else [])
    return out


def point_stats(data: Path, profile: str) -> dict[str, Any]:
    """What ``data/<profile>/raw/stats.json`` says of a point: ``canvas`` (``anchors.image_size``), ``positive_share``
    (``anchors.positive_share``: measured under the profile's anchor config), ``anchors_per_image``,
    ``positives_per_image``, ``objects_per_image`` (``splits.train.objects_per_image.mean``), ``visible`` (mean
    visible share of the labelled objects' pixels, ``splits.train.visible_fraction.mean``) and
    ``distractors_per_image`` (``splits.train.distractors_per_image``); the last five None where the file does not
    give them."""
    path = data / profile / "raw" / "stats.json"
    if not path.is_file():
        raise ReportError(f"missing {path} (the sweep profile's data statistics)")
    rec = read_json(path)
    anchors = rec.get("anchors") or {}
    share, size = anchors.get("positive_share"), anchors.get("image_size")
    if not isinstance(share, int | float) or not 0 < share <= 1:
        raise ReportError(f"{path}: anchors.positive_share must be a fraction in (0, 1], got {share!r}")
    if not isinstance(size, int):
        raise ReportError(f"{path}: anchors.image_size must be the canvas size in pixels, got {size!r}")
    train = (rec.get("splits") or {}).get("train") or {}

    def positive(v: Any, strict: bool = True) -> float | None:
        ok = isinstance(v, int | float) and not isinstance(v, bool) and (v > 0 if strict else v >= 0)
        return float(v) if ok else None

    return {"canvas": size, "positive_share": float(share),
            "anchors_per_image": positive(anchors.get("anchors_per_image")),
            "positives_per_image": positive(anchors.get("positives_per_image")),
            "objects_per_image": positive((train.get("objects_per_image") or {}).get("mean")),
            "visible": positive((train.get("visible_fraction") or {}).get("mean")),
            "distractors_per_image": positive(train.get("distractors_per_image"), strict=False)}


def stats_files(data: str | Path, params: Mapping[str, Any]) -> list[Path]:
    """``DATA/<profile>/raw/stats.json`` of every point of ``sweep.profiles``."""
    return [Path(data) / p / "raw" / "stats.json" for p in params["sweep"]["profiles"]]


def collect_sweep(runs: str | Path, data: str | Path, params: Mapping[str, Any],
                  selection_path: str | Path) -> pd.DataFrame:
    """One row per sweep run (duplicates of a val-best that is the paper default merged), profile by profile:
    :func:`lossbench.report.collect.read_run`'s fields plus ``profile``, :func:`point_stats`'s fields, ``condition``,
    ``label`` and ``role`` (``both`` when merged)."""
    root, data = Path(runs), Path(data)
    if not Path(selection_path).is_file():
        raise ReportError(f"selection file {selection_path} does not exist")
    design = sweep_design(params, read_json(selection_path), selection_path)
    sweep = params["sweep"]
    profiles = sweep.get("profiles")
    if not isinstance(profiles, list) or not profiles:
        raise ReportError("params: sweep.profiles must list the sweep's profiles")
    rows = []
    for profile in profiles:
        point = point_stats(data, profile)
        kept: dict[tuple, dict[str, Any]] = {}
        for fam in design:
            for role, setting in design[fam]:
                for seed in sweep.get("seeds") or []:
                    d = root / profile / role / fam / f"seed{seed}"
                    r = read_run(d, fam, seed, role, None, prior=True)
                    if setting_key(fam, r["setting"]) != setting_key(fam, setting):
                        where = (f"families.{fam}.best of {selection_path}" if role == "best"
                                 else f"the paper default ({fam}.default)")
                        raise ReportError(f"{d}/metrics.json: setting is {r['setting']}, but {where} "
                                          f"is {dict(setting)}")
                    other = keep_once(kept, (fam, setting_key(fam, setting), seed), r, d, fam, seed)
                    if other is not None:
                        other["role"] = "both"
                        continue
                    r.update(run=d.relative_to(root).as_posix(), profile=profile, **point,
                             label=setting_label(fam, setting), condition=f"{profile}/{fam}/{slug(fam, setting)}")
        rows += kept.values()
    return pd.DataFrame(rows)


def point_labels(summary: pd.DataFrame) -> dict[str, str]:
    """profile -> how its point differs from the others: its canvas (e.g. ``192 px``) where the canvases differ, else
    its objects per image (e.g. ``4 objects/image``) where those differ, else its canvas."""
    prof = summary.drop_duplicates("profile")
    by_objects = prof["canvas"].nunique() == 1 and prof["objects_per_image"].dropna().nunique() > 1
    return {r.profile: (f"{r.objects_per_image:.3g} object{'' if r.objects_per_image == 1 else 's'}/image"
                        if by_objects and not pd.isna(r.objects_per_image) else f"{r.canvas} px")
            for r in prof.itertuples()}


def _joined(values: pd.Series) -> str:
    """The distinct values of a column, sorted, as ``a/b`` (one value: itself)."""
    return "/".join(str(v) for v in sorted({v for v in values if not pd.isna(v)})) or "n/a"


def summarise_sweep(df: pd.DataFrame, values: np.ndarray, boot: np.ndarray) -> pd.DataFrame:
    """One row per (profile, family, role): mean test mAP50 (points) and its combined 95% interval, bounded to
    [0, 100], over every run (``mean, lo, hi``) and over the runs that did not collapse (``mean_ok, lo_ok, hi_ok``;
    no interval with fewer than two such runs), ``n`` runs of which ``n_collapsed`` collapsed (``df["collapsed"]``),
    with the point's training conditions. ``values`` (n_runs,), ``boot`` (n_boot, n_runs): points."""
    rows = []
    for cond, g in df.groupby("condition", sort=False):
        mean, lo, hi, _ = combined(values[g.index.to_numpy()], boot[:, g.index.to_numpy()])
        ok = g.index[~g["collapsed"]].to_numpy()
        mean_ok, lo_ok, hi_ok = (combined(values[ok], boot[:, ok])[:3] if len(ok) >= 2 else
                                 (float(values[ok].mean()) if len(ok) else math.nan, math.nan, math.nan))
        r = g.iloc[0]
        batch = g["batch_size"]
        per_step = (r["objects_per_image"] * batch.mean()
                    if r["objects_per_image"] is not None and batch.notna().all() else None)
        iters = g["iters"]
        in_all = per_step * iters.mean() if per_step is not None and iters.notna().all() else None
        rows.append({"profile": r["profile"], "canvas": r["canvas"], "objects_per_image": r["objects_per_image"],
                     "batch": _joined(batch), "iters": _joined(iters), "positive_share": r["positive_share"],
                     "anchors_per_image": r["anchors_per_image"], "positives_per_image": r["positives_per_image"],
                     "visible": r["visible"], "distractors_per_image": r["distractors_per_image"],
                     "objects_per_step": per_step, "objects_in_all": in_all,
                     "family": r["family"], "role": r["role"],
                     "label": r["label"], "condition": cond, "n": len(g), "n_collapsed": int(g["collapsed"].sum()),
                     "mean": mean, "lo": lo, "hi": hi, "mean_ok": mean_ok, "lo_ok": lo_ok, "hi_ok": hi_ok,
                     "clip_mean": g["clip_fraction"].mean(), "clip_max": g["clip_fraction"].max(),
                     "clip_max_norm": g["clip_max_norm"].max()})
    out = pd.DataFrame(rows)
    labels = point_labels(out)
    out.insert(1, "point", out["profile"].map(labels))
    return out


def sweep_comparisons(df: pd.DataFrame, values: np.ndarray, boot: np.ndarray, summary: pd.DataFrame) -> pd.DataFrame:
    """At each point of the sweep, paper default against paper default across families, paired by seed over the seeds
    where neither run collapsed (``df["collapsed"]``), every point's comparisons in one Holm family; beside each,
    ``collapsed_a, n_a_all, collapsed_b, n_b_all`` (collapsed and all runs of each arm), ``p_collapse`` (Fisher's exact
    test of the two collapse rates) and ``p_collapse_holm`` (Holm over the comparisons where a run collapsed: one
    without any collapse cannot reject and keeps p 1, out of the family's m)."""
    pairs, counts = [], []
    ok = df[~df["collapsed"]]
    for point, g in summary[summary.role.isin(["default", "both"])].groupby("point", sort=False):
        by = {r.family: r for r in g.itertuples()}
        fams = [f for f in FAMILY_ORDER if f in by]
        for i, fa in enumerate(fams):
            for fb in fams[i + 1:]:
                a, b = by[fa], by[fb]
                na, nb = f"{fa} {a.label}", f"{fb} {b.label}"
                all_a, all_b = arm(df, a.condition), arm(df, b.condition)
                if not set(all_a) & set(all_b):
                    raise ReportError(f"{na} vs {nb}: no common seed")
                ok_a, ok_b = arm(ok, a.condition), arm(ok, b.condition)
                pairs.append((point, na, ok_a, nb, ok_b))
                counts.append((len(all_a) - len(ok_a), len(all_a), len(all_b) - len(ok_b), len(all_b)))
    out = compare(pairs, values, boot, require_common=False)
    out["collapsed_a"], out["n_a_all"], out["collapsed_b"], out["n_b_all"] = (
        [c[j] for c in counts] for j in range(4))
    out["p_collapse"] = [fisher_collapse(*c) for c in counts]
    informative = [p if c[0] + c[2] > 0 else math.nan for p, c in zip(out["p_collapse"], counts)]
    adjusted, _ = stats.holm(informative, alpha=1 - CONFIDENCE) if counts else ([], [])
    out["p_collapse_holm"] = [1.0 if math.isnan(p) else p for p in adjusted]
    return out


def _cell(v: Any, fmt: str = "{:.3g}") -> str:
    return "n/a" if v is None or pd.isna(v) else fmt.format(v)


def _point_table(summary: pd.DataFrame, lead: dict[str, list[str]], cell) -> pd.DataFrame:
    """One row per point: the ``lead`` columns, then one column per family and role, ``cell(row)``."""
    prof = summary.drop_duplicates("profile")
    t = pd.DataFrame(lead)
    cells: dict[str, dict[str, str]] = {}
    for r in summary.itertuples():
        cells.setdefault(f"{r.family} {r.label} ({ROLE_LABEL[r.role]})", {})[r.profile] = cell(r)
    for col, by in cells.items():
        t[col] = [by.get(p, "n/a") for p in prof["profile"]]
    return t


def _sweep_cell(r: Any) -> str:
    """A cell of the sweep table: every run's mean [interval]; where a run collapsed, the count and the mean over the
    others."""
    text = tables.ci(r.mean, r.lo, r.hi)
    if r.n_collapsed:
        text += f"; {r.n_collapsed} of {r.n} collapsed, the others {tables.ci(r.mean_ok, r.lo_ok, r.hi_ok)}"
    return text


def sweep_tables(summary: pd.DataFrame, collapse_below: float) -> dict[str, str]:
    """``{suffix: text}``: one row per point of the sweep, one column per family and role."""
    prof = summary.drop_duplicates("profile")
    t = _point_table(summary, {"canvas (px)": prof["canvas"].astype(str).tolist(),
                               "objects / image": [_cell(v) for v in prof["objects_per_image"]],
                               "batch": prof["batch"].tolist(),
                               "positive anchors (%)": [f"{100 * s:.3g}" for s in prof["positive_share"]]},
                     _sweep_cell)
    caption = (f"Imbalance sweep: test mAP50 per point, {tables.CAPTION}; intervals 95% (combined: seeds + "
               f"{tables.N_BOOT} test-image bootstrap replicates), bounded to [0, 100], over every run; where runs "
               f"collapsed (final val mAP50 below {collapse_below:g}%), their count and the mean over the others (no "
               "interval from one run). positive anchors: measured share of anchors assigned positive on the point's "
               "data; objects / image: mean labelled objects per training image. CSV: mean, lo, hi (every run) and "
               "mean_ok, lo_ok, hi_ok (not collapsed) in %, positive_share a fraction.")
    return tables.texts(t, 4, caption, summary.drop(columns="condition"))


CONDITION_COLUMNS = ["profile", "point", "canvas", "objects_per_image", "batch", "iters", "objects_per_step",
                     "objects_in_all", "anchors_per_image", "positives_per_image", "positive_share", "visible",
                     "distractors_per_image",
                     "family", "role", "label", "clip_mean", "clip_max"]


def conditions_tables(summary: pd.DataFrame) -> dict[str, str]:
    """``{suffix: text}``: per point, the canvas, objects per image, batch, iterations, labelled objects per step and in
    all, anchors and positive anchors per image, the positive share, the visible share of the objects, distractors
    per image and, per family and role, the share of clipped steps (mean over seeds, and the largest)."""
    prof = summary.drop_duplicates("profile")
    t = _point_table(summary, {
        "canvas (px)": prof["canvas"].astype(str).tolist(),
        "objects / image": [_cell(v) for v in prof["objects_per_image"]], "batch": prof["batch"].tolist(),
        "iterations": prof["iters"].tolist(), "objects per step": [_cell(v) for v in prof["objects_per_step"]],
        "objects in all": [_cell(v, "{:,.0f}") for v in prof["objects_in_all"]],
        "anchors / image": [_cell(v, "{:,.0f}") for v in prof["anchors_per_image"]],
        "positive anchors / image": [_cell(v, "{:.1f}") for v in prof["positives_per_image"]],
        "positive anchors (%)": [f"{100 * s:.3g}" for s in prof["positive_share"]],
        "objects visible (%)": [_cell(None if v is None else 100 * v, "{:.1f}") for v in prof["visible"]],
        "distractors / image": [_cell(v, "{:.2f}") for v in prof["distractors_per_image"]]},
        lambda r: "n/a" if pd.isna(r.clip_mean) else f"{100 * r.clip_mean:.1f} (max {100 * r.clip_max:.1f})")
    caption = ("Training conditions per point: canvas, labelled objects per training image, batch, iterations, "
               "labelled objects per training step (objects per image x batch) and per run (x iterations), anchors "
               "and positive anchors per image and the positive share (measured under the sweep's anchors, "
               "stats.json), the mean visible share of the labelled objects' pixels (occlusion), unlabelled "
               "distractor shapes per image and, per family and setting, the share of steps whose gradient norm "
               "was clipped, % (mean over seeds, and the largest).")
    return tables.texts(t, 10, caption, summary[CONDITION_COLUMNS])


def build_sweep_report(runs: str | Path, data: str | Path, params: Mapping[str, Any],
                       selection: str | Path, out: str | Path) -> dict[str, Any]:
    """Write ``out``: README.md, tables/sweep*.{md,csv,tex}, figures/sweep_mAP50_vs_positive_share.*,
    provenance.json (atomically, as a whole). Unchanged runs and data statistics give byte-identical files."""
    df = collect_sweep(runs, data, params, selection)
    collapse_below = float(tables.comparison_spec(params)["collapse_below"])
    df["collapsed"] = ~(100 * df["val_mAP50"] >= collapse_below)  # NaN counts as collapsed
    # each profile is its own test set: its own bootstrap, blocks side by side in df's order; points (%) from here on
    boot = 100 * np.concatenate([bootstrap(df[df.profile == p], tables.N_BOOT, tables.BOOT_SEED)
                                 for p in df["profile"].unique()], axis=1)
    values = 100 * df["test_mAP50"].to_numpy(dtype=float)
    summary = summarise_sweep(df, values, boot)
    comp = sweep_comparisons(df, values, boot, summary)
    tests, slopes = sweep_interaction(df, values)
    text = {f"sweep{sfx}": t for sfx, t in sweep_tables(summary, collapse_below).items()}
    text.update({f"sweep_conditions{sfx}": t for sfx, t in conditions_tables(summary).items()})
    caption = ("Paired differences of test mAP50 (points) between the families' paper defaults at each point of the "
               "sweep, A − B over the common seeds where neither run collapsed; interval: seeds + test images "
               f"({tables.N_BOOT} bootstrap replicates shared by A and B) at the level Holm tests it at, bounded to "
               "[-100, 100]; every row of the table is one Holm family (family-wise 95%). A > B or A < B only where "
               "that interval excludes 0; otherwise not resolved. Collapse (final val mAP50 below "
               f"{collapse_below:g}%): runs per arm, Fisher's exact test of the two rates, Holm over the comparisons "
               "where a run collapsed.")
    text.update({f"sweep_comparisons{sfx}": t for sfx, t in comparison_tables(comp, caption).items()})
    for name, texts in interaction_tables(tests, slopes).items():
        text.update({f"{name}{sfx}": t for sfx, t in texts.items()})
    prov = provenance(df, "sweep", {"n_boot": tables.N_BOOT, "seed": tables.BOOT_SEED},
                      inputs=tuple(stats_files(data, params)))
    with atomic_path(out) as tmp:
        (tmp / "tables").mkdir(parents=True)
        for name, t in text.items():
            (tmp / "tables" / name).write_text(t)
        # the figure takes mAP50 as fractions, over the runs that did not collapse (the models' runs)
        figures.sweep(summary.assign(**{k: summary[f"{k}_ok"] / 100 for k in ("mean", "lo", "hi")}), tmp / "figures")
        (tmp / "provenance.json").write_text(json.dumps(prov, indent=2) + "\n")
        (tmp / "README.md").write_text(_readme(summary, comp, tests, slopes, text, prov, params, collapse_below))
    return {"runs": df, "summary": summary, "comparisons": comp, "interaction": tests, "slopes": slopes,
            "provenance": prov}


def _pct(share: float) -> str:
    return f"{100 * share:.3g}%"


def _exposure_text(summary: pd.DataFrame) -> str:
    """What is held fixed across the points and what changes with them, in words, from the summary."""
    prof = summary.drop_duplicates("profile")
    steps = prof["objects_per_step"]
    known = steps.notna().all() and len(prof) > 1
    same = known and steps.max() <= (1 + EXPOSURE_TOLERANCE) * steps.min()
    if same and prof["canvas"].nunique() > 1:
        r = prof.loc[steps.idxmax()]
        anchors = ", ".join(_cell(v, "{:,.0f}") for v in prof["anchors_per_image"])
        in_all = "" if pd.isna(r.objects_in_all) else f", {r.objects_in_all:,.0f} per run"
        text = (f"Every point holds the same scene ({r.objects_per_image:.3g} labelled objects per image, batch "
                f"{r.batch}: {r.objects_per_step:.3g} labelled objects per training step{in_all}) on a canvas of "
                f"{', '.join(f'{c}' for c in prof['canvas'])} px: positive exposure is the same at every point")
        if steps.round(6).nunique() > 1:
            text += (f" (measured {', '.join(f'{v:.4g}' for v in prof['objects_per_image'])} labelled objects per "
                     f"image: within {100 * EXPOSURE_TOLERANCE:g}%)")
        return (text + f"; what grows is the background area and the anchors over it ({anchors} per image), so the "
                "positives' share falls.")
    if known and not same:
        return (f"The points differ in labelled objects per training step ({', '.join(_cell(v) for v in steps)}): "
                "positive exposure is not held fixed, so the sweep measures rarer foreground together with fewer "
                "labelled examples, not rarity alone.")
    return "Points: " + ", ".join(prof["point"]) + "."


def _span_text(summary: pd.DataFrame) -> str:
    prof = summary.drop_duplicates("profile")
    hi, lo = prof.loc[prof["positive_share"].idxmax()], prof.loc[prof["positive_share"].idxmin()]
    span = hi.positive_share / lo.positive_share
    text = (f"The measured share of positive anchors runs from {_pct(hi.positive_share)} ({hi.point}) to "
            f"{_pct(lo.positive_share)} ({lo.point}): a {span:.1f}x span")
    if len(prof) > 1 and span < SHARE_SPAN_GOAL:
        text += f", short of the {SHARE_SPAN_GOAL:g}x the sweep is designed for"
    return text + "."


def _conditions_text(summary: pd.DataFrame) -> str:
    """What changes with the share of positive anchors besides the share, in words."""
    prof = summary.drop_duplicates("profile")
    norms = sorted({f"{v:g}" for v in summary["clip_max_norm"].dropna()})
    parts = [_exposure_text(summary)]
    if prof["canvas"].nunique() > 1:
        pixels = ", ".join(f"{c * c / 1000:,.0f}k" for c in prof["canvas"])
        parts.append(f"Compute per step grows with the canvas area ({pixels} pixels per image).")
    vis = prof["visible"]
    if vis.notna().all() and len(prof) > 1 and vis.round(3).nunique() > 1:
        parts.append("The same scene is more crowded on a smaller canvas: the labelled objects keep "
                     f"{', '.join(f'{100 * v:.1f}' for v in vis)}% of their pixels visible (mean, occlusion by later "
                     "shapes).")
    elif vis.notna().all() and len(prof) > 1:
        parts.append(f"Occlusion is the same at every point: the labelled objects keep {100 * vis.mean():.1f}% of "
                     "their pixels visible (mean).")
    dis = prof["distractors_per_image"]
    if dis.notna().all() and len(prof) > 1 and dis.round(2).nunique() > 1:
        parts.append(f"Unlabelled distractor shapes per image: {', '.join(f'{v:.2f}' for v in dis)} (one that finds "
                     "no room is dropped).")
    parts.append("The gradient-norm clip" + (f" (max_norm {', '.join(norms)})" if norms else "")
                 + " acts on a share of steps measured per run (table).")
    return " ".join(parts)


def _collapse_text(summary: pd.DataFrame, collapse_below: float) -> str:
    """Which cells had collapsed runs, in words."""
    hit = summary[summary["n_collapsed"] > 0]
    total, runs = int(summary["n_collapsed"].sum()), int(summary["n"].sum())
    head = (f"A run whose final val mAP50 is below {collapse_below:g}% has collapsed: it is counted, not averaged "
            "(the tables give each cell's mean over every run and over the runs that did not collapse; the figure, "
            "the comparisons and the interaction model use the latter).")
    if hit.empty:
        return f"{head} No sweep run collapsed ({runs} runs)."
    cells = "; ".join(f"{r.family} {r.label} at {r.point}: {r.n_collapsed} of {r.n}" for r in hit.itertuples())
    return f"{head} {total} of {runs} runs collapsed: {cells}."


def _interaction_text(tests: pd.DataFrame, slopes: pd.DataFrame) -> list[str]:
    lines = ["Does rarer foreground cost the families differently? Per-run test mAP50 (points) of the runs that did "
             "not collapse regressed on family "
             "(categorical) x log10(1 / measured positive share), one line per family, against one common slope "
             "(the additive model): an F-test of the interaction, for the paper defaults and for the val-bests "
             "(Holm-corrected together). A slope is points of test mAP50 per 10x rarer positives (negative: the "
             "family loses mAP50 as positives get rarer), with its 95% interval. The runs of a point share its test "
             "images, so the test conditions on the points' test sets (its residual is the seed noise).", ""]
    for r in tests.itertuples():
        fam = slopes[slopes["set"] == r.set]
        per = "; ".join(f"{s.family} {s.label} " + ("n/a" if math.isnan(s.slope) else
                                                     f"{s.slope:+.1f} [{s.lo:+.1f}, {s.hi:+.1f}]")
                        for s in fam.itertuples())
        test = (f"F({r.df1}, {r.df2}) = {r.F:.2f}, p = {r.p:.3f}, Holm p {r.p_holm:.3f}: **{r.verdict}**"
                if not math.isnan(r.F) else "**not estimable** (it needs two families or more, each at two shares or "
                "more, and more runs than coefficients)")
        left = f", {r.collapsed} collapsed left out" if r.collapsed else ""
        lines.append(f"- {r.set} ({r.runs} runs{left}, {r.families} families): {test}. Slopes (points per 10x "
                     f"rarer): {per}.")
    return lines


def _absent_text(params: Mapping[str, Any]) -> list[str]:
    """The families of ``remedies.families`` the sweep does not train, said with what they would cost."""
    swept = {r["family"] for r in params["sweep"].get("runs") or []}
    absent = [f for f in (params.get("remedies") or {}).get("families") or [] if f not in swept]
    if not absent:
        return []
    n = len(absent) * len(params["sweep"].get("profiles") or []) * len(params["sweep"].get("seeds") or [])
    return [f"Not in the sweep: the later remedies ({', '.join(absent)}; `make remedies`). The sweep's budget (2 h "
            f"on a 2-core CPU machine) holds the three papers' families; their val-bests alone at every point and "
            f"seed would add {n} runs.", ""]


def _readme(summary: pd.DataFrame, comp: pd.DataFrame, tests: pd.DataFrame, slopes: pd.DataFrame,
            text: dict[str, str], prov: dict[str, Any], params: Mapping[str, Any], collapse_below: float) -> str:
    sweep_seeds = ",".join(map(str, params["sweep"].get("seeds") or []))
    parts = ["# lossbench report — imbalance sweep", "",
             "Generated by `lossbench sweep-report` from the sweep runs' `metrics.json`, their test "
             "records and each profile's data statistics; do not edit by hand.", "",
             "Each family's paper default and its val-best on the main grid (chosen on val, `selection.json`) "
             f"retrained at each point of the sweep. {_exposure_text(summary)} {_span_text(summary)} Seeds "
             f"{sweep_seeds}. Test mAP50 (VOC-style, area, %) with 95% intervals that add seed noise and test-image "
             f"noise ({prov['bootstrap']['n_boot']} bootstrap replicates, seed {prov['bootstrap']['seed']}, per point: "
             "each has its own test set), bounded to [0, 100].", "",
             *_absent_text(params),
             _collapse_text(summary, collapse_below), "",
             "![sweep](figures/sweep_mAP50_vs_positive_share.png)", "", text["sweep.md"],
             "## Family x share interaction", ""]
    parts += _interaction_text(tests, slopes)
    parts += ["", text["sweep_interaction.md"], text["sweep_slopes.md"],
              "## Paper defaults compared at each point", "", "In words (verdicts verbatim from the table):", ""]
    parts += [f"- {comparison_sentence(r)}" for _, r in comp.iterrows()]
    parts += ["", text["sweep_comparisons.md"], "## Training conditions per point", "",
              _conditions_text(summary), "", text["sweep_conditions.md"]]
    parts += ["## Provenance", "", "```json", json.dumps(prov, indent=2), "```", ""]
    return "\n".join(parts)
