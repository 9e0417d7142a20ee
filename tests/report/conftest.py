"""Fabricated runs of the whole study design, with test records whose mAP50 is known by hand.

Records: ``n_images`` test images, one class, one ground truth per image. A run detects the ground truth of ``tp``
images (one true positive each, no false positive), so its VOC mAP50 is exactly ``tp / n_images``, and on a bootstrap
resample it is the share of resampled images that are among its ``tp``. The images of seed ``k`` start at ``7 k``.

The study (``PARAMS``): T = ``ITERS`` iterations, grid seeds 0-2, extra seeds 3-5, calibration seeds 0, 1 at 2T. Test
values in points: ``tp / 10`` (1000 test images); seed noise -1, 0, +1 point for seeds 0, 1, 2 (and 3, 4, 5), on val
and test alike, so every cell's pooled seed variance is 1 point².
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from lossbench.families import run_name

N_IMAGES = 1000
ITERS = 600  # T
PARAMS: dict[str, Any] = {
    "seeds": [0, 1, 2], "extra_seeds": [3, 4, 5], "calibration": {"iters": 2 * ITERS, "seeds": [0, 1]},
    "families": ["focal", "ohem", "sse"],
    "comparisons": {"alpha": 0.05, "power": 0.8, "collapse_below": 5.0, "detect_goal": 3.0,
                    "primary": [{"within": "focal"}, {"within": "ohem"}, {"within": "sse"}, {"across": "val_best"}]},
    "focal": {"settings": [{"gamma": 0.0, "alpha": 0.75}, {"gamma": 1.0, "alpha": 0.25},
                           {"gamma": 2.0, "alpha": 0.25}, {"gamma": 5.0, "alpha": 0.25}],
              "default": {"gamma": 2.0, "alpha": 0.25}},
    "ohem": {"neg_pos_ratio": [1, 3, "all"], "default": 3},
    "sse": {"lambda_noobj": [0.1, 0.5, 1.0], "default": 0.5},
}
# (family, slug) -> (val mAP50 of seed 1, true positives of seed 1). Val and test disagree in focal: γ 1 is best on val,
# γ 2 (the paper default) on test; ohem's val-best is 'all', the grid's edge; sse's val-best is its paper default.
SPEC: dict[tuple[str, str], tuple[float, int]] = {
    ("focal", "gamma0.0_alpha0.75"): (0.40, 500), ("focal", "gamma1.0_alpha0.25"): (0.62, 750),
    ("focal", "gamma2.0_alpha0.25"): (0.55, 950), ("focal", "gamma5.0_alpha0.25"): (0.45, 30),
    ("ohem", "ratio1"): (0.30, 400), ("ohem", "ratio3"): (0.50, 600), ("ohem", "ratioall"): (0.52, 610),
    ("sse", "lambda0.1"): (0.35, 300), ("sse", "lambda0.5"): (0.45, 500), ("sse", "lambda1.0"): (0.40, 495),
}
# the val-bests' extra seeds (3-5) test otherwise than the seeds that chose them: a mean over all six would show it
EXTRA_BEST_TP = {"focal": 700, "ohem": 720}
# the one collapsed grid run: focal γ 5 seed 1 ends at val 0.0 (and test 0.0)
COLLAPSED = ("focal", "gamma5.0_alpha0.25", 1)
# final val mAP50 of the 2T runs, seeds 0 and 1 (at T the same seeds give val_of(SPEC val, seed): -0.01, +0)
# (2T - T: focal default +4.0, best +0.8; ohem default +0.8, best -1.7, below the default at 2T; sse +0.5)
CAL_VAL = {("focal", "default"): (0.58, 0.59), ("focal", "best"): (0.62, 0.626),
           ("ohem", "default"): (0.50, 0.506), ("ohem", "best"): (0.495, 0.501), ("sse", "default"): (0.449, 0.451),
           ("sse", "best"): (0.449, 0.451)}
BEST = {"focal": {"gamma": 1.0, "alpha": 0.25}, "ohem": {"neg_pos_ratio": "all"}, "sse": {"lambda_noobj": 0.5}}
DEFAULT = {f: (PARAMS[f]["default"] if f == "focal" else {k: PARAMS[f]["default"]})
           for f, k in (("focal", None), ("ohem", "neg_pos_ratio"), ("sse", "lambda_noobj"))}
PRIOR_OFF_LOSS = 100  # true positives the prior-off runs of focal and ohem lose; sse's prior-off runs all collapse
FINAL = {"loss_cls": 0.3, "loss_bbox": 0.2, "diag_share_pos": 0.5, "diag_share_hard_neg": 0.3,
         "diag_share_easy_neg": 0.2}
PRETRAIN = {
    "spec": {"data": {"seed": 1, "n_train": 20000, "n_val": 1000, "image_size": 96}, "steps": 3000, "batch_size": 32,
             "lr": 0.002, "weight_decay": 0.0001, "warmup": 50, "seed": 0, "eval_every": 500},
    "backbone_parameters": 2798880,
    "checkpoint": {"file": "backbone.pth", "bytes": 5643725, "sha256": "66e4b5caf1a6c4c3" + "0" * 48,
                   "dtype": "float16"},
    "held_out": {"step": 3000, "mAP": 97.64, "subset_accuracy": 73.4}, "seconds": {"render": 19.4, "train": 451.8,
                                                                                  "total": 473.5}, "threads": 2}


def tp_of(tp: int, seed: int) -> int:
    """Seed noise: seeds 0, 1, 2 (and 3, 4, 5) detect tp − 10, tp, tp + 10 images."""
    return tp + 10 * (seed % 3 - 1)


def val_of(val: float, seed: int) -> float:
    """Seed noise of val: −0.01, 0, +0.01 for seeds 0, 1, 2 (and 3, 4, 5)."""
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
              clipped: float = 0.01, batch: int = 8, iters: int = ITERS,
              final: dict[str, float] | None = None) -> None:
    d.mkdir(parents=True, exist_ok=True)
    test = write_records(d / "test_records.npz", tp_images(tp, seed, n_images), n_images)
    # val every 1/8 of the schedule for the extra seeds and the 2T runs, at 75% and 100% otherwise
    eighths = range(1, 9) if role not in ("grid", "prior_off") else (6, 8)
    curve = [{"iter": iters * q // 8, "mAP50": round(max(val - 0.01 * (8 - q) / 2, 0.0), 6)} for q in eighths]
    (d / "metrics.json").write_text(json.dumps({
        "run": "unused", "profile": "synth", "config": "configs/synth/x.py", "family": family,
        "imbalance": {"type": family, **setting, **({"obj_target": "iou"} if family == "sse" else {})},
        "seed": seed, "setting": setting, "prior_prob": 0.01 if prior else None, "role": role,
        "metrics": {"val": {"mAP50": val, "AP": val / 2}, "test": {"mAP50": test, "AP": test / 2}},
        "no_detections": {"val": False, "test": tp == 0},
        "val_curve": curve, "clip": {"max_norm": max_norm, "clipped_fraction": clipped, "steps": iters},
        "records": "test_records.npz", "final": final or FINAL, "iters": iters, "batch_size": batch,
        "timing": {"wall_time_s": 10.0}}))
    (d / "env.json").write_text(json.dumps({
        "git_revision": "abc" + ("-dirty" if (family, seed) == ("sse", 2) and role == "grid" else ""),
        "packages": {"torch": "2.13.0"}, "cpu_threads": 2, "cpu_model": "Fake CPU 9000",
        "cpu_capability": "AVX2", "Python": "3.11.7 (main)"}))


def _slug(family: str, setting: dict[str, Any]) -> str:
    return run_name(family, setting, 0).split("/")[1]


def make_study(root: Path) -> Path:
    """Every run of the design of ``PARAMS`` under ``root`` (pretrain, grid, extra seeds, prior off, calibration) and
    ``root/selection.json`` as `lossbench select` would write it."""
    (root / "pretrain").mkdir(parents=True)
    (root / "pretrain" / "metrics.json").write_text(json.dumps(PRETRAIN))
    grids = {"focal": PARAMS["focal"]["settings"],
             "ohem": [{"neg_pos_ratio": r} for r in PARAMS["ohem"]["neg_pos_ratio"]],
             "sse": [{"lambda_noobj": v} for v in PARAMS["sse"]["lambda_noobj"]]}
    for fam, grid in grids.items():
        for s in grid:
            val, tp = SPEC[fam, _slug(fam, s)]
            for seed in PARAMS["seeds"]:
                down = (fam, _slug(fam, s), seed) == COLLAPSED
                write_run(root / run_name(fam, s, seed), fam, s, seed, "grid", 0.0 if down else val_of(val, seed),
                          0 if down else tp_of(tp, seed))
        for role, s in (("default", DEFAULT[fam]), ("best", BEST[fam])):
            val, tp = SPEC[fam, _slug(fam, s)]
            tp = EXTRA_BEST_TP.get(fam, tp) if role == "best" else tp
            for seed in PARAMS["extra_seeds"]:
                write_run(root / "extra" / role / fam / f"seed{seed}", fam, s, seed, role,
                          val_of(val, seed), tp_of(tp, seed))
            for seed, cal_val in zip(PARAMS["calibration"]["seeds"], CAL_VAL[fam, role]):
                write_run(root / "calibration" / role / fam / f"seed{seed}", fam, s, seed, f"calibration_{role}",
                          cal_val, tp_of(tp, seed), iters=2 * ITERS)
        val, tp = SPEC[fam, _slug(fam, DEFAULT[fam])]
        for seed in PARAMS["seeds"]:
            off = (0.0, 0) if fam == "sse" else (val_of(val, seed) - 0.05, tp_of(tp, seed) - PRIOR_OFF_LOSS)
            write_run(root / "prior_off" / fam / f"seed{seed}", fam, DEFAULT[fam], seed, "prior_off", *off,
                      prior=False, final={**FINAL, "diag_share_pos": 1.0, "diag_share_hard_neg": 0.0,
                                          "diag_share_easy_neg": 0.0} if fam == "sse" else None)
    from lossbench.report.select import select, write_selection

    write_selection(select(root, PARAMS), root / "selection.json")
    return root


SMOKE_PARAMS: dict[str, Any] = {
    **{k: PARAMS[k] for k in ("families", "comparisons")}, "seeds": [0], "extra_seeds": [1],
    "calibration": {"iters": 8, "seeds": [0]},
    "focal": {"settings": [{"gamma": 2.0, "alpha": 0.25}, {"gamma": 0.0, "alpha": 0.25}],
              "default": {"gamma": 2.0, "alpha": 0.25}},
    "ohem": {"neg_pos_ratio": [3], "default": 3}, "sse": {"lambda_noobj": [0.25], "default": 0.25}}


def make_collapsed_study(root: Path, params: dict[str, Any] = SMOKE_PARAMS, iters: int = 4) -> Path:
    """Every run of the design of ``params`` (as the smoke profile's: one grid seed, 4 iterations, a config without
    pretraining) ending at val and test mAP50 0: every run collapsed."""
    from lossbench.families import default_of, grid_of
    from lossbench.report.select import select, write_selection

    (root / "pretrain").mkdir(parents=True)
    (root / "pretrain" / "metrics.json").write_text(json.dumps({"pretrain": None, "backbone_init_cfg": None}))
    for fam in params["families"]:
        default = default_of(fam, params[fam])
        for s in grid_of(fam, params[fam]):
            for seed in params["seeds"]:
                write_run(root / run_name(fam, s, seed), fam, s, seed, "grid", 0.0, 0, iters=iters)
        for role in ("default", "best"):  # every setting ties at 0: the val-best is the paper default
            for seed in params["extra_seeds"]:
                write_run(root / "extra" / role / fam / f"seed{seed}", fam, default, seed, role, 0.0, 0, iters=iters)
            for seed in params["calibration"]["seeds"]:
                write_run(root / "calibration" / role / fam / f"seed{seed}", fam, default, seed,
                          f"calibration_{role}", 0.0, 0, iters=2 * iters)
        for seed in params["seeds"]:
            write_run(root / "prior_off" / fam / f"seed{seed}", fam, default, seed, "prior_off", 0.0, 0, prior=False,
                      iters=iters)
    write_selection(select(root, params), root / "selection.json")
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
