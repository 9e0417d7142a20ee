"""A generated detection set whose foreground/background ratio is a knob.

``generate`` writes a whole set: ``params`` (``SynthParams``; ``generate_kwargs`` reads a profile's ``data``),
``render`` (the images), ``write`` (VOC and COCO files), ``stats`` (``stats.json``).
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from lossbench.data.synth.params import RUN_KEYS, SynthParams, generate_kwargs
from lossbench.data.synth.render import CLASS_SPECS, HUES, SPLITS, iter_images, make_banks, render_image
from lossbench.data.synth.stats import set_statistics, summary_text
from lossbench.data.synth.write import write_set
from lossbench.utils import atomic_path, atomic_write_json

__all__ = ["CLASS_SPECS", "HUES", "RUN_KEYS", "SynthParams", "generate", "generate_kwargs", "make_banks",
           "render_image", "summary_text"]


def generate(out: str | os.PathLike, seed: int, n_train: int, n_val: int, n_test: int,
             params: SynthParams = SynthParams(), workers: int = 1,  # noqa: B008 (frozen)
             anchor_config: str | os.PathLike | None = None, stats_images: int = 2000,
             log=print) -> dict[str, Any]:
    """Write the whole set under ``out``, replaced atomically as a whole, and return the dict
    written to ``out/stats.json`` (``anchor_config``, ``stats_images``: ``stats.set_statistics``).
    A non-empty ``out`` that is not an earlier synth output (no ``stats.json``) is refused."""
    params = params.resolved()
    out = Path(out)
    if out.exists() and any(out.iterdir()) and not (out / "stats.json").is_file():
        raise FileExistsError(f"{out}: exists, is not empty and holds no synth stats.json; "
                              "refusing to replace it (choose another --out)")
    counts = {"train": n_train, "val": n_val, "test": n_test}
    for k, v in counts.items():
        if v < 0:
            raise ValueError(f"--n-{k} must be >= 0, got {v}")
    tasks = [(s, i) for s in SPLITS for i in range(1, counts[s] + 1)]
    t0 = time.perf_counter()
    with atomic_path(out) as tmp:
        info = {"description": "lossbench synthetic detection set", "seed": seed, "params": params.as_dict()}
        recs = write_set(tmp, iter_images(params, seed, tasks, workers), info)
        elapsed = time.perf_counter() - t0  # images and annotation files, not the anchor statistics
        stats = set_statistics(recs, params, seed, anchor_config, stats_images)
        atomic_write_json(tmp / "stats.json", stats)
    log(summary_text(stats, out, elapsed))
    return stats
