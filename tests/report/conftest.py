"""Fabricated runs of the whole study design, with test records whose mAP50 is known by hand.

Records: ``N_IMAGES`` test images, one class, one ground truth per image. A run detects the
ground truth of ``tp`` images (one true positive each, no false positive), so its VOC mAP50 is
exactly ``tp / N_IMAGES``, and on a bootstrap resample it is the share of resampled images
that are among its ``tp``. The images of seed ``k`` start at ``7 k``: runs of one seed with
more true positives detect a superset, so paired differences have little image noise.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from lossbench.families import run_name

N_IMAGES = 200
ITERS = 600
PARAMS: dict[str, Any] = {
    "seeds": [0, 1, 2], "extra_seeds": [3, 4],
    "focal": {"settings": [{"gamma": 0.0, "alpha": 0.75}, {"gamma": 1.0, "alpha": 0.25},
                           {"gamma": 2.0, "alpha": 0.25}, {"gamma": 5.0, "alpha": 0.25}],
              "default": {"gamma": 2.0, "alpha": 0.25}},
    "ohem": {"neg_pos_ratio": [1, 3, "all"], "default": 3},
    "sse": {"lambda_noobj": [0.1, 0.5, 1.0], "default": 0.5},
}
# (family, slug) -> (val mAP50 of seed 1, true positives of seed 1). Val and test disagree in
# focal: γ 1 is best on val, γ 2 (the paper default) on test. ohem's val-best is 'all', the
# grid's edge; sse's val-best is its paper default.
SPEC: dict[tuple[str, str], tuple[float, int]] = {
    ("focal", "gamma0.0_alpha0.75"): (0.40, 100), ("focal", "gamma1.0_alpha0.25"): (0.62, 150),
    ("focal", "gamma2.0_alpha0.25"): (0.55, 190), ("focal", "gamma5.0_alpha0.25"): (0.45, 6),
    ("ohem", "ratio1"): (0.30, 80), ("ohem", "ratio3"): (0.50, 120), ("ohem", "ratioall"): (0.52, 122),
    ("sse", "lambda0.1"): (0.35, 60), ("sse", "lambda0.5"): (0.45, 100), ("sse", "lambda1.0"): (0.40, 90),
}
BEST = {"focal": {"gamma": 1.0, "alpha": 0.25}, "ohem": {"neg_pos_ratio": "all"}, "sse": {"lambda_noobj": 0.5}}
DEFAULT = {f: (PARAMS[f]["default"] if f == "focal" else {k: PARAMS[f]["default"]})
           for f, k in (("focal", None), ("ohem", "neg_pos_ratio"), ("sse", "lambda_noobj"))}
PRIOR_OFF_LOSS = 30  # true positives the prior-off runs lose


def tp_of(tp: int, seed: int) -> int:
    """Seed noise: seeds 0, 1, 2, 3, 4 detect tp − 2, tp, tp + 2, tp − 2, tp images."""
    return tp + 2 * (seed % 3 - 1)


def val_of(val: float, seed: int) -> float:
    """Seed noise of val: −0.01, 0, +0.01, −0.01, 0."""
    return round(val + 0.01 * (seed % 3 - 1), 6)


def tp_images(tp: int, seed: int, n_images: int = N_IMAGES) -> np.ndarray:
    return (7 * seed + np.arange(tp)) % n_images


def write_records(path: Path, images: np.ndarray, n_images: int = N_IMAGES) -> float:
    """Records of one true positive on each of ``images``; returns their mAP50."""
    from lossbench.records import TP, Records, save_records, voc_map

    rec = Records(image=np.asarray(images, dtype=np.int32), label=np.zeros(len(images), np.int16),
                  score=np.linspace(0.99, 0.5, len(images)).astype(np.float32),
                  state=np.full(len(images), TP, np.int8), num_gts=np.ones((n_images, 1), np.int32),
                  image_ids=np.array([f"img{i}" for i in range(n_images)]), iou_thr=0.5)
    save_records(rec, path)
    return voc_map(rec)


def write_run(d: Path, family: str, setting: dict[str, Any], seed: int, role: str, val: float,
              tp: int, prior: bool = True, n_images: int = N_IMAGES, max_norm: float | None = 20.0,
              clipped: float = 0.01, batch: int = 8) -> None:
    d.mkdir(parents=True, exist_ok=True)
    test = write_records(d / "test_records.npz", tp_images(tp, seed, n_images), n_images)
    # val every 1/8 of the schedule for the extra seeds (calibration), at 75% and 100% otherwise
    eighths = range(1, 9) if role in ("default", "best") else (6, 8)
    curve = [{"iter": ITERS * q // 8, "mAP50": round(val - 0.01 * (8 - q) / 2, 6)} for q in eighths]
    (d / "metrics.json").write_text(json.dumps({
        "run": "unused", "profile": "synth", "family": family,
        "imbalance": {"type": family, **setting, **({"obj_target": "iou"} if family == "sse" else {})},
        "seed": seed, "setting": setting, "prior_prob": 0.01 if prior else None, "role": role,
        "metrics": {"val": {"mAP50": val, "AP": val / 2}, "test": {"mAP50": test, "AP": test / 2}},
        "val_curve": curve, "clip": {"max_norm": max_norm, "clipped_fraction": clipped, "steps": ITERS},
        "records": "test_records.npz", "final": {"loss_cls": 0.3}, "iters": ITERS, "batch_size": batch,
        "timing": {"wall_time_s": 10.0}}))
    curves = d / "dvclive" / "plots" / "metrics"
    curves.mkdir(parents=True, exist_ok=True)
    for k, vals in {"loss_cls": [1.0, 0.5], "loss_bbox": [0.8, 0.4], "diag_share_pos": [0.2, 0.5],
                    "diag_share_hard_neg": [0.3, 0.3], "diag_share_easy_neg": [0.5, 0.2]}.items():
        (curves / f"{k}.tsv").write_text(f"step\t{k}\n300\t{vals[0]}\n600\t{vals[1]}\n")
    (d / "env.json").write_text(json.dumps({
        "git_revision": "abc" + ("-dirty" if (family, seed) == ("sse", 2) and role == "grid" else ""),
        "packages": {"torch": "2.13.0"}, "cpu_threads": 2, "cpu_model": "Fake CPU 9000",
        "cpu_capability": "AVX2", "Python": "3.11.7 (main)"}))


def _slug(family: str, setting: dict[str, Any]) -> str:
    return run_name(family, setting, 0).split("/")[1]


def make_study(root: Path) -> Path:
    """Every run of the design of ``PARAMS`` under ``root`` (grid, extra seeds, prior off) and
    ``root/selection.json`` as `lossbench select` would write it."""
    grids = {"focal": PARAMS["focal"]["settings"],
             "ohem": [{"neg_pos_ratio": r} for r in PARAMS["ohem"]["neg_pos_ratio"]],
             "sse": [{"lambda_noobj": v} for v in PARAMS["sse"]["lambda_noobj"]]}
    for fam, grid in grids.items():
        for s in grid:
            val, tp = SPEC[fam, _slug(fam, s)]
            for seed in PARAMS["seeds"]:
                write_run(root / run_name(fam, s, seed), fam, s, seed, "grid", val_of(val, seed), tp_of(tp, seed))
        for role, s in (("default", DEFAULT[fam]), ("best", BEST[fam])):
            val, tp = SPEC[fam, _slug(fam, s)]
            for seed in PARAMS["extra_seeds"]:
                write_run(root / "extra" / role / fam / f"seed{seed}", fam, s, seed, role,
                          val_of(val, seed), tp_of(tp, seed))
        val, tp = SPEC[fam, _slug(fam, DEFAULT[fam])]
        for seed in PARAMS["seeds"]:
            write_run(root / "prior_off" / fam / f"seed{seed}", fam, DEFAULT[fam], seed, "prior_off",
                      val_of(val, seed) - 0.05, tp_of(tp, seed) - PRIOR_OFF_LOSS, prior=False)
    from lossbench.report.select import select, write_selection

    write_selection(select(root, PARAMS), root / "selection.json")
    return root


@pytest.fixture(scope="session")
def fab() -> SimpleNamespace:
    """This file's constants and fabrication helpers, for the tests to use."""
    return SimpleNamespace(**{k: v for k, v in globals().items() if not k.startswith("_")})


@pytest.fixture
def study(tmp_path) -> Path:
    """A fresh runs folder of the whole design (mutable by the test)."""
    return make_study(tmp_path / "runs")


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> dict[str, Any]:
    """The report of an untouched study, built once per module: ``{"runs", "out", "res"}``."""
    from lossbench.report.build import build_report

    base = tmp_path_factory.mktemp("built")
    runs = make_study(base / "runs")
    out = base / "report"
    res = build_report(runs, PARAMS, "synth", out, runs / "selection.json")
    return {"runs": runs, "out": out, "res": res}


SWEEP_PARAMS: dict[str, Any] = {
    **PARAMS,
    "sweep": {"profiles": ["sweep_o12", "sweep_o4", "sweep_o1"], "seeds": [0, 1, 2],
              "runs": [{"family": f, "choose": c} for f in ("focal", "ohem", "sse") for c in ("default", "best")]},
}
# The sweep's points: fewer labelled objects per image on one canvas and batch. profile ->
# (measured share of positive anchors, objects per image, test images: each point has a test
# set of its own size); true positives fall with the share.
SWEEP_SIZE, SWEEP_BATCH = 192, 4
SWEEP_POINTS = {"sweep_o12": (0.014, 12.0, 220), "sweep_o4": (0.0048, 4.0, 200), "sweep_o1": (0.0012, 1.0, 180)}
SWEEP_TP = {("focal", "default"): 150, ("focal", "best"): 140, ("ohem", "default"): 120,
            ("ohem", "best"): 125, ("sse", "default"): 100, ("sse", "best"): 100}


def sweep_params(profiles: list[str]) -> dict[str, Any]:
    """``SWEEP_PARAMS`` with only ``profiles`` (of ``SWEEP_POINTS``) as the sweep's points."""
    return {**SWEEP_PARAMS, "sweep": {**SWEEP_PARAMS["sweep"], "profiles": list(profiles)}}


def make_sweep(base: Path) -> tuple[Path, Path]:
    """``(runs/sweep, data)`` under ``base`` for ``SWEEP_PARAMS`` and the selection of
    :func:`make_study` (focal val-best γ 1, ohem 'all', sse the paper default: its default and
    best runs are the same runs, trained twice)."""
    runs, data = base / "runs" / "sweep", base / "data"
    for i, (profile, (share, objects, n_images)) in enumerate(SWEEP_POINTS.items()):
        (data / profile / "raw").mkdir(parents=True)
        (data / profile / "raw" / "stats.json").write_text(
            json.dumps({"anchors": {"image_size": SWEEP_SIZE, "positive_share": share},
                        "splits": {"train": {"objects_per_image": {"mean": objects}}}}))
        for fam in ("focal", "ohem", "sse"):
            for role, s in (("default", DEFAULT[fam]), ("best", BEST[fam])):
                for seed in SWEEP_PARAMS["sweep"]["seeds"]:
                    # OHEM's clipped share grows point by point (1%, 2%, 3%, +0.3% per seed)
                    write_run(runs / profile / role / fam / f"seed{seed}", fam, s, seed, role, 0.5,
                              tp_of(SWEEP_TP[fam, role] - 20 * i, seed), batch=SWEEP_BATCH, n_images=n_images,
                              clipped=(0.01 * (i + 1) + 0.003 * seed) if fam == "ohem" else 0.0)
    return runs, data
