"""Train and test one resolved config with MMEngine's Runner; write the run's records.

Only the main process writes the run folder OUT: ``env.json``, ``dvclive/`` (curves and the run's
identity), ``test_records.npz`` (``lossbench.records``, for the image bootstrap) and, last, atomically
and only after finite losses, ``metrics.json``: VOC mAP@0.5 and the COCO APs of ``val`` (chooses
settings; ``val_curve``: every evaluation during training) and of ``test`` (reported), the share of
clipped steps, final losses and diagnostics, timing, the config digest and the data paths as given.
The work dir (checkpoints, logs, the resolved config) follows ``lossbench.training.resume``.
"""

from __future__ import annotations

import math
import os
import shutil
import time
from pathlib import Path
from typing import Any

from lossbench.training.distributed import is_main_process
from lossbench.training.resume import fingerprint, prepare_work_dir
from lossbench.utils import atomic_write_json

# metrics.json key -> evaluator key
METRIC_KEYS = {"mAP50": "pascal_voc/mAP", "AP": "coco/bbox_mAP", "AP50": "coco/bbox_mAP_50",
               "AP75": "coco/bbox_mAP_75", "APs": "coco/bbox_mAP_s", "APm": "coco/bbox_mAP_m", "APl": "coco/bbox_mAP_l"}
# metrics.json key -> the evaluator yielding it where a config has one (the VOC profile's 11-point metric)
OPTIONAL_METRICS = {"mAP50_11pt": {"type": "VOCMetric", "eval_mode": "11points"}}
FINAL_WINDOW = 0.1  # final losses/diagnostics: mean over the last 10% of iterations


def final_scalars(message_hub, max_iters: int) -> dict[str, float]:
    """Mean of each logged loss/diagnostic over the last ``FINAL_WINDOW`` of training."""
    window = max(1, int(math.ceil(FINAL_WINDOW * max_iters)))
    out = {}
    for key, buf in message_hub.log_scalars.items():
        name = key.partition("/")[2]
        if key.startswith("train/") and ("loss" in name or name.startswith("diag_")):
            vals = list(buf.data[0][-window:])
            if vals:
                out[name] = float(sum(vals) / len(vals))
    return dict(sorted(out.items()))


#: evaluator type -> prefix of its keys
EVALUATOR_PREFIX = {"VOCMetric": "pascal_voc", "CocoMetric": "coco"}


def evaluated_prefixes(evaluator) -> set[str]:
    """Key prefixes of the study's metrics that an evaluator config (one dict or a list) yields."""
    evs = evaluator if isinstance(evaluator, (list, tuple)) else [evaluator]
    return {ev.get("prefix") or EVALUATOR_PREFIX[ev["type"]] for ev in evs if ev and ev.get("type") in EVALUATOR_PREFIX}


def optional_metric_keys(evaluator) -> dict[str, str]:
    """metrics.json key -> evaluator key of the :data:`OPTIONAL_METRICS` that an evaluator config (one dict or a list)
    has: ``<prefix>/mAP`` with the evaluator's own ``prefix`` (else its type's); two matching one metric is an error."""
    evs = evaluator if isinstance(evaluator, (list, tuple)) else [evaluator]
    out = {}
    for name, match in OPTIONAL_METRICS.items():
        found = [ev for ev in evs if ev and all(ev.get(k) == v for k, v in match.items())]
        if len(found) > 1:
            raise ValueError(f"{len(found)} evaluators match {name} ({match}); expected at most one")
        if found:
            out[name] = f"{found[0].get('prefix') or EVALUATOR_PREFIX[found[0]['type']]}/mAP"
    return out


def collect_metrics(results: dict[str, float], prefixes: set[str] | None = None,
                    optional: dict[str, str] | None = None) -> tuple[dict[str, float | None], bool]:
    """The study's metrics from the evaluators' output, and whether any is missing: CocoMetric returns nothing when no
    box scores above ``score_thr``; AP is then 0 by definition. A metric pycocotools cannot compute (-1: no ground truth
    of that size) is ``None``. ``prefixes``: the split's evaluators (``evaluated_prefixes``), None: all; ``optional``:
    the split's ``optional_metric_keys``, each kept where the results have it."""
    out, missing = {}, False
    for name, key in METRIC_KEYS.items():
        if prefixes is not None and key.split("/")[0] not in prefixes:
            continue
        v = results.get(key)
        if v is None or (isinstance(v, float) and math.isnan(v)):
            missing, v = True, 0.0
        out[name] = None if v < 0 else round(float(v), 6)
    for name, key in (optional or {}).items():
        if key in results:
            out[name] = round(float(results[key]), 6)
    return out, missing


def build_runner(cfg):
    """``Runner.from_cfg`` with GPU-safe determinism: on CUDA, deterministic algorithms need
    cuBLAS's fixed workspace (``CUBLAS_WORKSPACE_CONFIG``, set unless given) and would make an
    op without a deterministic kernel raise hours into a run, so they only warn there."""
    import torch
    from mmengine.runner import Runner

    deterministic = bool((cfg.get("randomness") or {}).get("deterministic"))
    cuda = torch.cuda.is_available()
    if deterministic and cuda:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    runner = Runner.from_cfg(cfg)
    if deterministic and cuda:
        torch.use_deterministic_algorithms(True, warn_only=True)
    return runner


def finish_config(cfg, out: Path, name: str, work_dir: Path) -> None:
    """Add what every run of the study adds to its resolved config, in place: the work dir and
    name, the study's hooks, the per-detection test records (``OUT/test_records.npz``) and the
    DVCLive curves (``OUT/dvclive``). ``lossbench train --print-config`` shows the result."""
    cfg.work_dir = str(work_dir)
    cfg.experiment_name = name.replace("/", "_")
    max_norm = (cfg.optim_wrapper.get("clip_grad") or {}).get("max_norm")
    cfg.custom_hooks = list(cfg.get("custom_hooks", []) or []) + [
        dict(type="FiniteLossHook", run_name=name), dict(type="ResumedCurvesHook", dvclive_dir=str(out / "dvclive")),
        dict(type="ClipFractionHook", max_norm=max_norm), dict(type="ValHistoryHook")]
    # per-detection test records for the bootstrap over test images (lossbench.records)
    evs = cfg.test_evaluator if isinstance(cfg.test_evaluator, list) else [cfg.test_evaluator]
    cfg.test_evaluator = [*evs, dict(type="DetectionRecords", out_file=str(out / "test_records.npz"))]
    cfg.visualizer.vis_backends = [
        dict(type="LocalVisBackend"),
        dict(type="RunDVCLiveVisBackend", save_dir=str(out / "dvclive"), run=name, artifact_suffix=(),
             init_kwargs=dict(save_dvc_exp=False, dvcyaml=False, report=None, cache_images=False,
                              monitor_system=False))]


def train_run(cfg, out: Path, name: str, meta: dict[str, Any], work_dir: Path, log=print) -> dict[str, Any]:
    """Train (or resume) and test a config finished by :func:`finish_config`; write
    OUT/{env.json,dvclive,test_records.npz,metrics.json}."""
    import lossbench.models.registry  # noqa: F401  (head, losses, compat fixes)
    from lossbench.training import hooks  # registers the study's hooks and RunDVCLiveVisBackend
    from lossbench.training.config import config_digest
    from lossbench.training.envinfo import environment_record

    main = is_main_process()
    if main:
        out.mkdir(parents=True, exist_ok=True)
        for stale in ("metrics.json", "test_records.npz", "config.py"):  # never leave an old result behind
            (out / stale).unlink(missing_ok=True)
    from mmengine.dist import barrier, get_dist_info

    # The main process keeps or empties the work folder first; the others then read what it left
    # (a checkpoint it kept, or none), so no rank creates files in a folder about to be removed.
    digest = fingerprint(cfg)
    dvclive_dir = out / "dvclive"
    if main:
        ckpt = prepare_work_dir(work_dir, digest, main_process=True, log=log)
        if ckpt is None:
            shutil.rmtree(dvclive_dir, ignore_errors=True)
    barrier()  # a no-op outside a process group
    if not main:
        ckpt = prepare_work_dir(work_dir, digest, main_process=False, log=log)
    if ckpt is not None:
        log(f"resuming from {ckpt}")
    meta = {**meta, "config_digest": config_digest(cfg)}
    cfg.resume, cfg.load_from = ckpt is not None, str(ckpt) if ckpt else None
    max_norm = (cfg.optim_wrapper.get("clip_grad") or {}).get("max_norm")
    evs = [ev for ev in cfg.test_evaluator if ev.get("type") != "DetectionRecords"]
    records = out / "test_records.npz"
    if main:
        atomic_write_json(out / "env.json", environment_record())

    started_at = time.time()
    runner = build_runner(cfg)
    t0 = time.perf_counter()
    runner.train()
    t_train = time.perf_counter() - t0
    resumed_iter = next(h.resumed_from_iter for h in runner.hooks if isinstance(h, hooks.ResumedCurvesHook))
    history = next(h for h in runner.hooks if isinstance(h, hooks.ValHistoryHook)).history
    if runner.val_loop is not None and (not history or history[-1]["iter"] != runner.iter):
        runner.val_loop.run()  # resumed from the last checkpoint: the final validation is missing
    last_val = history[-1] if history else {}
    val_metrics, val_no_det = collect_metrics(last_val, evaluated_prefixes(cfg.val_evaluator),
                                              optional_metric_keys(cfg.val_evaluator))
    results = runner.test()
    t_total = time.perf_counter() - t0
    rank, world_size = get_dist_info()
    metrics, no_det = collect_metrics(results or {}, evaluated_prefixes(evs), optional_metric_keys(evs))
    if "records/mAP" in (results or {}) and abs(results["records/mAP"] - results.get("pascal_voc/mAP", 0.0)) > 1e-6:
        raise RuntimeError(f"run {name!r}: mAP@0.5 from the test records ({results['records/mAP']}) "
                           f"differs from VOCMetric's ({results.get('pascal_voc/mAP')})")
    by_epoch = cfg.train_cfg.get("max_iters") is None
    trained = runner.iter - resumed_iter
    batch = cfg.train_dataloader.batch_size
    record = {
        "run": name, **meta, "metrics": {"val": val_metrics, "test": metrics},
        "no_detections": {"val": val_no_det, "test": no_det},
        "val_curve": [{"iter": h["iter"], "mAP50": round(h.get("pascal_voc/mAP", 0.0), 6)} for h in history],
        "clip": hooks.ClipFractionHook.summary(runner, max_norm), "prior_prob": cfg.model.bbox_head.get("prior_prob"),
        "records": records.name if records.is_file() else None,
        "final": final_scalars(runner.message_hub, cfg.train_cfg.get("max_iters") or runner.iter),
        "iters": runner.iter, "batch_size": batch, "world_size": world_size, "total_batch_size": batch * world_size,
        "resumed_from_iter": resumed_iter,
        **({"resumed_from_epoch": int(ckpt.stem.split("_")[-1]) if ckpt else 0} if by_epoch else {}),
        "timing": {"started_at": round(started_at, 3), "finished_at": round(time.time(), 3),
                   "wall_time_s": round(t_total, 2), "train_time_s": round(t_train, 2),
                   "eval_time_s": round(t_total - t_train, 2),
                   "train_images_per_s": round(trained * batch * world_size / t_train, 2)
                   if trained > 0 and t_train > 0 else None}}
    runner.visualizer.close()
    if rank == 0:
        atomic_write_json(out / "metrics.json", record)
        log(f"rank 0: wrote {out / 'metrics.json'}")
    return {**record, "rank": rank}
