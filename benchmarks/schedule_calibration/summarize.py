"""Summarise the schedule-calibration runs (run.sh) into summary.md: per variant and setting,
the training time per iteration (its 8 val passes included), final val and test mAP50 and the
val gain over the last 25% of the iterations, means over seeds (each seed in brackets)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> int:
    rows = []
    for f in sorted((HERE / "runs").glob("*/*/seed*/metrics.json")):
        d = json.loads(f.read_text())
        variant, setting = f.parts[-4], f.parts[-3]
        curve = {p["iter"]: 100 * p["mAP50"] for p in d["val_curve"]}
        n = d["iters"]
        if 3 * n % 4 or 3 * n // 4 not in curve:
            sys.exit(f"{f}: no val point at 75% of {n} iterations (val_curve {sorted(curve)})")
        rows.append((variant, setting, d["seed"], n, 1000 * d["timing"]["train_time_s"] / n,
                     100 * d["metrics"]["val"]["mAP50"], 100 * d["metrics"]["test"]["mAP50"],
                     curve[n] - curve[3 * n // 4]))
    if not rows:
        sys.exit(f"{HERE / 'runs'}: no runs")
    out = ["| variant | setting | iterations | seeds | ms / iteration, 8 val passes included (2 x 1 thread) | "
           "final val mAP50 | test mAP50 | val gain, last 25% (pts) |", "|" + " --- |" * 8]
    for key in sorted({r[:2] for r in rows}):
        rs = [r for r in rows if r[:2] == key]

        def mean(i, rs=rs):
            return sum(r[i] for r in rs) / len(rs)

        each = ", ".join(f"{r[7]:+.1f}" for r in rs)
        out.append(f"| {key[0]} | {key[1]} | {rs[0][3]} | {len(rs)} | {mean(4):.1f} | {mean(5):.1f} | "
                   f"{mean(6):.1f} | {mean(7):+.2f} ({each}) |")
    text = "\n".join(out) + "\n"
    tmp = HERE / ".summary.md.tmp"
    tmp.write_text(text)
    tmp.replace(HERE / "summary.md")
    print(text, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
