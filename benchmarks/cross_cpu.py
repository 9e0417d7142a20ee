"""The same runs on another CPU: how far their metrics move, and whether the study's differences hold.

A run's seed fixes its initialisation, data order and augmentation, and training is deterministic
on one machine, but another CPU (another instruction set, another BLAS kernel) rounds differently,
and the difference grows over 2,400 steps. This compares a tree of runs retrained elsewhere
(``--rerun``, the layout of ``runs/<profile>``: ``<family>/<setting>/seed<k>/``, each with its
``metrics.json`` and ``env.json``) with the committed runs of the same paths (``--reference``):

- per run: the CPU of each, val and test mAP50 of each, the test difference, and whether the two
  ``test_records.npz`` are the same bytes (where the rerun kept them);
- per setting: the mean test mAP50 over the seeds both have, on each machine, beside the
  reference's seed standard deviation (the scale a machine change is measured against);
- per pair of settings of one family: the difference of their means over the same seeds on each
  machine, and how much it moved.

    python benchmarks/cross_cpu.py --rerun DIR [--reference runs/synth] [--out MD]
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
from pathlib import Path

import pandas as pd


def _sha(path: Path) -> str | None:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None


def load_runs(tree: Path) -> pd.DataFrame:
    """One row per run folder under ``tree`` holding a ``metrics.json`` (not DVCLive's): its path
    relative to ``tree`` (``run``), family, setting, seed, CPU, val and test mAP50 (points) and the
    sha256 of its ``test_records.npz`` (None where absent)."""
    rows = []
    for metrics in sorted(tree.rglob("metrics.json")):
        run = metrics.parent
        if run.name == "dvclive" or not run.name.startswith("seed"):
            continue
        env_file = run / "env.json"
        try:
            m = json.loads(metrics.read_text())
            env = json.loads(env_file.read_text()) if env_file.is_file() else {}
            val, test = m["metrics"]["val"]["mAP50"], m["metrics"]["test"]["mAP50"]
        except (json.JSONDecodeError, KeyError, TypeError) as e:
            raise ValueError(f"{run}: unreadable metrics.json or env.json ({type(e).__name__}: {e})") from e
        rel = run.relative_to(tree)  # <family>/<setting>/seed<k>; extra/best/<family>/seed<k> etc. alike
        family = rel.parts[0] if len(rel.parts) == 3 else "/".join(rel.parts[:-2])
        rows.append({"run": str(rel), "family": family, "setting": rel.parts[-2],
                     "seed": int(rel.parts[-1].removeprefix("seed")), "cpu": env.get("cpu_model"),
                     "cpu_capability": env.get("cpu_capability"),
                     "val": 100 * val, "test": 100 * test,
                     "records_sha": _sha(run / "test_records.npz")})
    if not rows:
        raise ValueError(f"{tree}: no run folder (<family>/<setting>/seed<k>/metrics.json) under it")
    return pd.DataFrame(rows)


def compare(reference: pd.DataFrame, rerun: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """The per-run, per-setting and per-pair tables (see the module's docstring)."""
    keys = ["run", "family", "setting", "seed"]
    runs = reference.merge(rerun, on=keys, suffixes=("_ref", "_rerun"), how="inner")
    if runs.empty:
        raise ValueError("no run path is in both trees")
    runs["d_test"] = runs.test_rerun - runs.test_ref
    runs["d_val"] = runs.val_rerun - runs.val_ref
    runs["same_bytes"] = [a is not None and a == b for a, b in zip(runs.records_sha_ref, runs.records_sha_rerun)]
    # the reference's seed SD over the same seeds the rerun has
    by_setting = runs.groupby(["family", "setting"])
    settings = by_setting.agg(seeds=("seed", lambda s: ",".join(map(str, sorted(s)))), n=("seed", "size"),
                              ref=("test_ref", "mean"), rerun=("test_rerun", "mean"),
                              ref_sd=("test_ref", "std"), rerun_sd=("test_rerun", "std"),
                              mean_abs_d=("d_test", lambda d: d.abs().mean())).reset_index()
    settings["d"] = settings.rerun - settings.ref
    pairs = []
    for family, grp in settings.groupby("family"):
        for a, b in itertools.combinations(grp.itertuples(index=False), 2):
            if a.seeds != b.seeds:
                continue
            pairs.append({"family": family, "a": a.setting, "b": b.setting, "seeds": a.seeds,
                          "ref": a.ref - b.ref, "rerun": a.rerun - b.rerun})
    pairs = pd.DataFrame(pairs, columns=["family", "a", "b", "seeds", "ref", "rerun"])
    pairs["moved"] = pairs.rerun - pairs.ref
    pairs["same_sign"] = (pairs.ref * pairs.rerun) > 0
    return {"runs": runs, "settings": settings, "pairs": pairs}


def _cpu(df: pd.DataFrame, col: str) -> str:
    cpus = df[[f"cpu{col}", f"cpu_capability{col}"]].drop_duplicates().astype(str).agg(" (".join, axis=1) + ")"
    return "; ".join(cpus)


def _signed(x: float) -> str:
    """``x`` to one decimal with its sign, zero as +0.0 (never -0.0)."""
    return f"{round(x, 1) + 0.0:+.1f}"


def markdown(tables: dict[str, pd.DataFrame], reference: Path, rerun: Path) -> str:
    runs, settings, pairs = tables["runs"], tables["settings"], tables["pairs"]
    f1 = "{:.1f}".format
    lines = [
        "# The same runs on another CPU",
        "",
        f"Written by `python benchmarks/cross_cpu.py --rerun {rerun} --reference {reference}`. "
        f"Reference: {_cpu(runs, '_ref')}; rerun: {_cpu(runs, '_rerun')}. "
        f"{len(runs)} runs in both (the same setting and seed); "
        f"{int(runs.same_bytes.sum())} of them with the same `test_records.npz` bytes. "
        "mAP50 in points.",
        "",
        f"Per run, |test difference|: mean {f1(runs.d_test.abs().mean())}, largest "
        f"{f1(runs.d_test.abs().max())} (|val difference|: mean {f1(runs.d_val.abs().mean())}, largest "
        f"{f1(runs.d_val.abs().max())}); the reference's seed SD of test within a setting: "
        f"{f1(settings.ref_sd.min())}–{f1(settings.ref_sd.max())}.",
        "",
        "## Settings",
        "",
        "| family | setting | seeds | test, reference (SD) | test, rerun (SD) | difference "
        "| mean abs. run difference |",
        "|---|---|---|---|---|---|---|",
    ]
    for s in settings.itertuples(index=False):
        lines.append(f"| {s.family} | {s.setting} | {s.seeds} | {f1(s.ref)} ({f1(s.ref_sd)}) | "
                     f"{f1(s.rerun)} ({f1(s.rerun_sd)}) | {_signed(s.d)} | {f1(s.mean_abs_d)} |")
    lines += ["", "## Differences between settings, the same seeds on each machine", "",
              "| family | A | B | seeds | A − B, reference | A − B, rerun | moved | same sign |",
              "|---|---|---|---|---|---|---|---|"]
    for p in pairs.itertuples(index=False):
        lines.append(f"| {p.family} | {p.a} | {p.b} | {p.seeds} | {_signed(p.ref)} | {_signed(p.rerun)} | "
                     f"{_signed(p.moved)} | {'yes' if p.same_sign else 'no'} |")
    lines += ["", "## Runs", "", "| run | val, ref | val, rerun | test, ref | test, rerun | difference | same bytes |",
              "|---|---|---|---|---|---|---|"]
    for r in runs.itertuples(index=False):
        lines.append(f"| {r.run} | {f1(r.val_ref)} | {f1(r.val_rerun)} | {f1(r.test_ref)} | {f1(r.test_rerun)} | "
                     f"{_signed(r.d_test)} | {'yes' if r.same_bytes else 'no'} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rerun", required=True, help="the runs retrained on another machine (runs/<profile> layout)")
    p.add_argument("--reference", default="runs/synth", help="the committed runs (default runs/synth)")
    p.add_argument("--out", help="write the markdown here (else print it)")
    a = p.parse_args(argv)
    reference, rerun = Path(a.reference), Path(a.rerun)
    text = markdown(compare(load_runs(reference), load_runs(rerun)), reference, rerun)
    if a.out:
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        Path(a.out).write_text(text)
    else:
        print(text, end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
