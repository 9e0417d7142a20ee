"""Train one run of the study (one family, one knob value, one seed) and evaluate it.

A run folder OUT receives:

  OUT/metrics.json   test-split metrics (VOC-style mAP@0.5, COCO AP/AP50/AP75/APs/m/l),
                     final losses and imbalance diagnostics, timing; written last,
                     atomically, and only if the run finished with finite losses
  OUT/config.py      the resolved MMDetection config
  OUT/env.json       versions, git revision, device
  OUT/dvclive/       training curves (DVCLive; `dvc plots show`)
  WORK_DIR/          MMEngine's work_dir (--work-dir, default OUT/work; under
                     $LOSSBENCH_WORK_ROOT when that is set): logs and the last
                     checkpoint. It is not a DVC output, so a killed run resumes where
                     it stopped; it starts over when the resolved config, the training
                     code or the annotations changed, or when the run had finished.

Distributed: `torchrun --nproc_per_node=N -m lossbench train --launcher pytorch ...`
or `srun ... lossbench train --launcher slurm ...`; only rank 0 writes OUT. With
LOSSBENCH_GPUS=0,1,... a single-process run takes a free GPU of that pool
(lossbench.devices).

Examples:
  lossbench train --profile synth --family focal --gamma 2 --alpha 0.25 --seed 0 \\
      --data-root data/synth/raw --ann-dir data/synth/prepared --out runs/synth/focal/g2/s0
  lossbench train --config configs/synth/retinanet_r18n_fpn_ohem_synth.py --neg-pos-ratio all ...
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import math
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from lossbench.models.imbalance import FAMILIES, ImbalanceConfigError, validate_imbalance
from lossbench.profiles import ProfileError, amp_options, load_profile
from lossbench.utils import atomic_write_json, atomic_write_text

# (metrics.json key, evaluator key)
METRIC_KEYS = (
    ("mAP50", "pascal_voc/mAP"),
    ("AP", "coco/bbox_mAP"),
    ("AP50", "coco/bbox_mAP_50"),
    ("AP75", "coco/bbox_mAP_75"),
    ("APs", "coco/bbox_mAP_s"),
    ("APm", "coco/bbox_mAP_m"),
    ("APl", "coco/bbox_mAP_l"),
)
#: a relative --work-dir is taken relative to this folder when set (a DVC queue
#: worker runs in a temporary copy of the repository: checkpoints land in the
#: real one, e.g. LOSSBENCH_WORK_ROOT=$PWD)
WORK_ROOT_ENV = "LOSSBENCH_WORK_ROOT"
FINAL_WINDOW = 0.1  # final losses/diagnostics: mean over the last 10% of iterations


def run_name(family: str, imbalance: dict[str, Any], seed: int) -> str:
    """``focal/gamma2_alpha0.25/seed0``-style name of a run."""
    knobs = [k for k in FAMILIES[family] if k != "obj_target"]
    parts = []
    for k in knobs:
        v = imbalance[k]
        v = "all" if v is None else (f"{v:g}" if isinstance(v, float) else str(v))
        parts.append(f"{k}{v}")
    if family == "sse" and imbalance.get("obj_target", "iou") != "iou":
        parts.append(f"obj{imbalance['obj_target']}")
    return f"{family}/{'_'.join(parts)}/seed{seed}"


#: the code a run's result depends on (the train stages' code deps in dvc.yaml),
#: relative to the lossbench package
CODE_DEPS = ("models", "config.py", "compat.py", "profiles.py", "hooks.py", "stages/train.py")


def code_digest(root: Path | None = None) -> str:
    """Digest of the training code (``CODE_DEPS``): a checkpoint of other code is never resumed."""
    root = Path(root) if root is not None else Path(__file__).resolve().parents[1]
    h = hashlib.sha256()
    for rel in CODE_DEPS:
        p = root / rel
        for f in sorted(p.rglob("*.py")) if p.is_dir() else [p]:
            h.update(f.relative_to(root).as_posix().encode() + b"\0" + f.read_bytes())
    return h.hexdigest()[:16]


def data_digest(cfg) -> str:
    """Digest of the contents of every existing ``*.json`` file the config names (annotations)."""
    found: set[str] = set()

    def walk(x):
        if isinstance(x, dict):
            for v in x.values():
                walk(v)
        elif isinstance(x, (list, tuple)):
            for v in x:
                walk(v)
        elif isinstance(x, str) and x.endswith(".json") and Path(x).is_file():
            found.add(x)

    walk(cfg.to_dict())
    h = hashlib.sha256()
    for f in sorted(found):
        h.update(f.encode() + b"\0" + Path(f).read_bytes())
    return h.hexdigest()[:16]


def fingerprint(cfg) -> str:
    """Digest of what training computes: the resolved config (minus logging and paths of
    outputs), the training code and the annotation files' contents."""
    d = cfg.to_dict()
    for k in ("work_dir", "resume", "load_from", "visualizer", "default_hooks", "custom_hooks",
              "log_processor", "log_level"):
        d.pop(k, None)
    d["__code__"], d["__data__"] = code_digest(), data_digest(cfg)
    return hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:16]


def resumable_iter(work_dir: Path, digest: str, max_iters: int | None = None) -> int:
    """The iteration a run can resume from in ``work_dir``.

    0 when there is no checkpoint, when it belongs to another config / code /
    data, or when it is the run's last one (``max_iters``): a finished run is
    only run again because something changed, so it starts over.
    """
    marker, last = work_dir / "fingerprint.txt", work_dir / "last_checkpoint"
    if not (marker.is_file() and marker.read_text().strip() == digest and last.is_file()):
        return 0
    ckpt = Path(last.read_text().strip())
    try:
        it = int(ckpt.stem.split("_")[-1]) if ckpt.is_file() else 0
    except ValueError:
        return 0
    return 0 if max_iters and it >= max_iters else it


def prepare_work_dir(work_dir: Path, digest: str, main_process: bool = True,
                     max_iters: int | None = None) -> int:
    """Keep a resumable checkpoint of the same run; wipe anything else.

    Returns the iteration to resume from (0 = fresh start). Only the main
    process changes the folder; the others only read it (the decision is the
    same: a folder being wiped has nothing to resume).
    """
    start = resumable_iter(work_dir, digest, max_iters)
    if start or not main_process:
        return start
    if work_dir.exists():
        shutil.rmtree(work_dir)
    work_dir.mkdir(parents=True)
    atomic_write_text(work_dir / "fingerprint.txt", digest + "\n")
    return 0


def truncate_curves(dvclive_dir: Path, last_step: int) -> None:
    """Drop curve rows past ``last_step`` (logged after the checkpoint a resumed run restarts from)."""
    for tsv in (dvclive_dir / "plots").rglob("*.tsv") if dvclive_dir.exists() else []:
        with open(tsv, newline="") as f:
            rows = list(csv.reader(f, delimiter="\t"))
        if not rows or "step" not in rows[0]:
            continue
        i = rows[0].index("step")
        kept = [rows[0]] + [r for r in rows[1:] if int(float(r[i])) <= last_step]
        with open(tsv, "w", newline="") as f:
            csv.writer(f, delimiter="\t", lineterminator="\n").writerows(kept)


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


def collect_metrics(results: dict[str, float]) -> tuple[dict[str, float], bool]:
    """Pick the study's metrics from the evaluators' output.

    CocoMetric returns nothing when no box scores above ``score_thr`` (an
    untrained model); AP is then 0 by definition, which is what we record,
    with ``no_detections`` set so the report can say so. A metric pycocotools
    cannot compute (-1: no ground truth of that size) is ``None``.
    """
    out, missing = {}, False
    for name, key in METRIC_KEYS:
        v = results.get(key)
        if v is None or (isinstance(v, float) and math.isnan(v)):
            missing = True
            v = 0.0
        # pycocotools reports -1 for an area range without ground truth (e.g. no
        # large objects in 128 px images): not applicable, recorded as null
        out[name] = None if v < 0 else round(float(v), 6)
    return out, missing


def imbalance_from_args(args: argparse.Namespace, family: str) -> dict[str, Any]:
    imb: dict[str, Any] = {"type": family}
    for knob in ("gamma", "alpha", "neg_pos_ratio", "lambda_noobj", "obj_target"):
        v = getattr(args, knob, None)
        if v is not None:
            imb[knob] = v
    if "neg_pos_ratio" in imb and isinstance(imb["neg_pos_ratio"], str):
        r = imb["neg_pos_ratio"]
        imb["neg_pos_ratio"] = None if r.lower() in ("all", "none") else float(r)
    return validate_imbalance(imb, key="--" + family)


def train_run(cfg, out: Path, name: str, meta: dict[str, Any],
              work_dir: Path | None = None) -> dict[str, Any]:
    """Train and test a resolved config; write OUT/{config.py,env.json,dvclive,metrics.json}."""
    import lossbench.models.registry  # noqa: F401  (head, losses, compat fixes)
    from lossbench import hooks  # noqa: F401  (FiniteLossHook)
    from lossbench.envinfo import environment_record

    # torchrun sets RANK, srun SLURM_PROCID: only process 0 writes the run's records
    main = int(os.environ.get("RANK", os.environ.get("SLURM_PROCID", "0"))) == 0
    if main:
        out.mkdir(parents=True, exist_ok=True)
        (out / "metrics.json").unlink(missing_ok=True)  # never leave an old result behind
    work_dir = Path(work_dir) if work_dir is not None else out / "work"
    if os.environ.get(WORK_ROOT_ENV) and not work_dir.is_absolute():
        work_dir = Path(os.environ[WORK_ROOT_ENV]) / work_dir
    # iteration-based schedules checkpoint as iter_N.pth, epoch-based ones as epoch_N.pth
    by_epoch = cfg.train_cfg.get("max_iters") is None
    total = cfg.train_cfg.get("max_epochs") if by_epoch else cfg.train_cfg.get("max_iters")
    start = prepare_work_dir(work_dir, fingerprint(cfg), main_process=main, max_iters=total)
    start_iter = 0 if by_epoch else start
    cfg.work_dir = str(work_dir)
    cfg.resume = start > 0
    cfg.experiment_name = name.replace("/", "_")
    cfg.custom_hooks = list(cfg.get("custom_hooks", []) or []) + [
        dict(type="FiniteLossHook", run_name=name)]
    dvclive_dir = out / "dvclive"
    if main and not start:
        shutil.rmtree(dvclive_dir, ignore_errors=True)
    elif main and start_iter:  # (an epoch-based resume keeps its rows)
        truncate_curves(dvclive_dir, start_iter)
    cfg.visualizer.vis_backends = [
        dict(type="LocalVisBackend"),
        dict(type="DVCLiveVisBackend", save_dir=str(dvclive_dir), artifact_suffix=(),
             init_kwargs=dict(resume=bool(start), save_dvc_exp=False, dvcyaml=False,
                              report=None, cache_images=False, monitor_system=False)),
    ]
    if main:
        atomic_write_text(out / "config.py", cfg.pretty_text)
        atomic_write_json(out / "env.json", environment_record())

    started_at = time.time()
    runner = build_runner(cfg)
    t0 = time.perf_counter()
    runner.train()
    t_train = time.perf_counter() - t0
    results = runner.test()
    t_total = time.perf_counter() - t0
    from mmengine.dist import get_dist_info

    rank, world_size = get_dist_info()
    metrics, no_det = collect_metrics(results or {})
    max_iters = cfg.train_cfg.get("max_iters") or 0
    trained_iters = max(0, runner.iter - start_iter)
    batch = cfg.train_dataloader.batch_size
    record = {
        "run": name,
        **meta,
        "metrics": metrics,
        "no_detections": no_det,
        "final": final_scalars(runner.message_hub, max_iters or runner.iter),
        "iters": runner.iter,
        "batch_size": batch,
        "world_size": world_size,
        "total_batch_size": batch * world_size,
        "resumed_from_iter": start_iter,
        **({"resumed_from_epoch": start} if by_epoch else {}),
        "timing": {
            "started_at": round(started_at, 3),
            "finished_at": round(time.time(), 3),
            "wall_time_s": round(t_total, 2),
            "train_time_s": round(t_train, 2),
            "eval_time_s": round(t_total - t_train, 2),
            "train_images_per_s": (round(trained_iters * batch * world_size / t_train, 2)
                                   if t_train > 0 and not (by_epoch and start) else None),
        },
    }
    runner.visualizer.close()
    if rank == 0:
        atomic_write_json(out / "metrics.json", record)
        print(f"rank 0: wrote {out / 'metrics.json'}")
    return {**record, "rank": rank}


def build_runner(cfg):
    """``Runner.from_cfg`` with GPU-safe determinism.

    A seeded config asks MMEngine for deterministic algorithms, which it turns
    on with ``torch.use_deterministic_algorithms(True)``. On CUDA that needs
    cuBLAS's fixed workspace (``CUBLAS_WORKSPACE_CONFIG``, set here unless
    given) and makes any op without a deterministic kernel raise, hours into a
    run; there it is switched to ``warn_only=True`` (deterministic kernels
    where they exist, a warning naming the others). On CPUs nothing changes.
    """
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


def check_precision(cfg, log=print) -> None:
    """Mixed precision needs a CUDA GPU; bf16 needs one that has bfloat16 (else fp16)."""
    import torch

    ow = cfg.optim_wrapper
    if ow.get("type") != "AmpOptimWrapper":
        return
    if not torch.cuda.is_available():
        raise ValueError("mixed precision (optim_wrapper.type=AmpOptimWrapper, from the profile's "
                         "train.amp or --amp) needs a CUDA GPU; use --amp none to train on CPU")
    if ow.get("dtype") in ("bfloat16", torch.bfloat16) and not torch.cuda.is_bf16_supported():
        ow.dtype = "float16"
        log("lossbench train: this GPU has no bfloat16; mixed precision falls back to float16")


def setup_distributed(cfg, launcher: str) -> None:
    """Run ``cfg`` data-parallel under MMEngine's ``launcher`` ('pytorch' or 'slurm').

    On GPUs MMEngine does everything (NCCL, one device per local rank). MMEngine's
    launchers call ``torch.cuda.set_device``, so on CPUs the gloo process group is
    started here from the launcher's environment (torchrun: RANK/WORLD_SIZE/
    MASTER_ADDR/MASTER_PORT; srun: SLURM_PROCID/SLURM_NTASKS/SLURM_NODELIST), and
    the model is wrapped without device ids; MMEngine then sees an initialised
    process group and uses it.
    """
    import os
    import subprocess

    import torch
    import torch.distributed as dist

    cfg.launcher = launcher
    if torch.cuda.is_available():
        cfg.env_cfg.dist_cfg = dict(backend="nccl")
        return
    cfg.env_cfg.dist_cfg = dict(backend="gloo")
    cfg.model_wrapper_cfg = dict(type="MMDistributedDataParallel", device_ids=None,
                                 broadcast_buffers=False, find_unused_parameters=False)
    if dist.is_initialized():
        return
    if launcher == "slurm":
        env = os.environ
        missing = [k for k in ("SLURM_PROCID", "SLURM_NTASKS", "SLURM_NODELIST") if k not in env]
        if missing:
            raise ValueError(f"--launcher slurm: {', '.join(missing)} not set (run under srun)")
        env["RANK"], env["WORLD_SIZE"] = env["SLURM_PROCID"], env["SLURM_NTASKS"]
        env["LOCAL_RANK"] = env.get("SLURM_LOCALID", "0")
        env.setdefault("MASTER_PORT", "29500")
        if "MASTER_ADDR" not in env:
            hosts = subprocess.run(["scontrol", "show", "hostnames", env["SLURM_NODELIST"]],
                                   capture_output=True, text=True, check=True).stdout.split()
            env["MASTER_ADDR"] = hosts[0]
    missing = [k for k in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")
               if k not in os.environ]
    if missing:
        raise ValueError(f"--launcher {launcher}: {', '.join(missing)} not set "
                         "(run under torchrun / python -m torch.distributed.run)")
    dist.init_process_group(backend="gloo")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    src = parser.add_argument_group("what to train")
    src.add_argument("--profile", help="profile of params.yaml (sets config, schedule, batch)")
    src.add_argument("--params", default="params.yaml", help="params file (default params.yaml)")
    src.add_argument("--config", help="MMDetection config (instead of the profile's)")
    src.add_argument("--family", required=True, choices=sorted(FAMILIES))
    src.add_argument("--seed", type=int, required=True)
    knobs = parser.add_argument_group("knobs (the family's defaults otherwise)")
    knobs.add_argument("--gamma", type=float, help="focal: focusing parameter, >= 0")
    knobs.add_argument("--alpha", type=float, help="focal: positive weight in [0, 1]")
    knobs.add_argument("--neg-pos-ratio", help="ohem: negatives per positive (> 0) or 'all'")
    knobs.add_argument("--lambda-noobj", type=float, help="sse: no-object weight, >= 0")
    knobs.add_argument("--obj-target", choices=["iou", "one"], help="sse: objectness target")
    io = parser.add_argument_group("paths")
    io.add_argument("--data-root", required=True, help="folder the images' file_name are relative to")
    io.add_argument("--ann-dir", required=True, help="prepared {train,val,test}.json folder")
    io.add_argument("--out", required=True, help="run folder (metrics, config, env, curves)")
    io.add_argument("--work-dir", help="checkpoints and logs (default OUT/work)")
    parser.add_argument("--max-iters", type=int, help="override the schedule length (iterations)")
    parser.add_argument("--amp", choices=["none", "fp16", "bf16"],
                        help="mixed precision (AmpOptimWrapper; default: the profile's train.amp); "
                             "bf16 falls back to fp16 on GPUs without bfloat16")
    parser.add_argument("--launcher", choices=["none", "pytorch", "slurm"], default="none",
                        help="'pytorch' under torchrun, 'slurm' under srun (MMEngine's launchers); "
                             "NCCL on GPUs, gloo on CPUs")
    parser.add_argument("--cfg-options", nargs="+", default=[], metavar="KEY=VALUE",
                        help="extra config overrides, e.g. train_dataloader.batch_size=4")


def _parse_options(items: list[str]) -> dict[str, Any]:
    import yaml

    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"--cfg-options: expected KEY=VALUE, got {item!r}")
        out[key] = yaml.safe_load(value)
    return out


def run(args: argparse.Namespace) -> int:
    from lossbench.config import load_config
    from lossbench.devices import pin_device_from_pool
    from lossbench.hooks import NonFiniteLossError

    try:
        imbalance = imbalance_from_args(args, args.family)
        options = _parse_options(args.cfg_options)
        max_iters = args.max_iters
        if args.config:
            config = Path(args.config)
        elif args.profile:
            prof = load_profile(args.params, args.profile)
            config = prof.config_for(args.family)
            options = {**prof.train_options(amp=args.amp), **options}
            max_iters = max_iters or prof.train.get("max_iters")
        else:
            raise ValueError("give --profile (with --params) or --config")
        name = run_name(args.family, imbalance, args.seed)
        cfg = load_config(config, data_root=args.data_root, ann_dir=args.ann_dir,
                          imbalance=imbalance, seed=args.seed, max_iters=max_iters,
                          options=options)
        if args.config and args.amp:
            cfg.merge_from_dict(amp_options(args.amp))
        check_precision(cfg)
        if args.launcher != "none":
            setup_distributed(cfg, args.launcher)
        device = pin_device_from_pool(log=lambda m: print(f"lossbench train: {m}", flush=True))
    except (ImbalanceConfigError, ProfileError, ValueError, FileNotFoundError) as e:
        print(f"lossbench train: error: {e}", file=sys.stderr)
        return 2
    from lossbench.models.imbalance import SWEPT_KNOB

    meta = {"profile": args.profile, "config": str(config), "family": args.family,
            "imbalance": imbalance, "knob": SWEPT_KNOB[args.family],
            "value": imbalance[SWEPT_KNOB[args.family]], "seed": args.seed,
            "pool_device": device}
    try:
        rec = train_run(cfg, Path(args.out), name, meta,
                        work_dir=Path(args.work_dir) if args.work_dir else None)
    except NonFiniteLossError as e:
        print(f"lossbench train: error: {e}", file=sys.stderr)
        return 3
    if rec["rank"] != 0:
        return 0
    m = rec["metrics"]
    print(f"{name}: mAP50 {m['mAP50']:.3f}  AP {m['AP']:.3f}  "
          f"({rec['timing']['wall_time_s']:.0f} s, {rec['timing']['train_images_per_s']} img/s)")
    return 0
