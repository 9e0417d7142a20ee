"""Train and evaluate one run of the study: one config, one knob value of one family, one seed.

The config (a profile's, from params.yaml: profiles.<name>.config, or --config)
says how the run trains; this command adds only the data paths, the family's
knob, the seed and the work dir, then MMEngine's Runner trains and tests it
(lossbench.engine). A killed or re-run training resumes from its newest complete
checkpoint when nothing that determines its result changed (lossbench.resume).

Distributed: `torchrun --nproc_per_node=N -m lossbench train --launcher pytorch ...`
or `srun ... lossbench train --launcher slurm ...`; only rank 0 writes OUT. With
LOSSBENCH_GPUS=0,1,... a single-process run first takes a free GPU of that pool
(lossbench.devices), before anything can initialise CUDA.

Examples:
  lossbench train --profile synth --family focal --gamma 2.0 --alpha 0.25 --seed 0 \\
      --data-root data/synth/raw --ann-dir data/synth/prepared \\
      --out runs/synth/focal/gamma2.0_alpha0.25/seed0
  lossbench train --config configs/smoke/retinanet_r18n_fpn_smoke.py --family ohem \\
      --neg-pos-ratio all --seed 0 ... --cfg-options train_cfg.max_iters=8
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from lossbench.models.imbalance import FAMILIES, SWEPT_KNOB, ImbalanceConfigError, validate_imbalance
from lossbench.naming import SLUGS, run_name

#: a relative --work-dir is taken relative to this folder when set (a DVC queue
#: worker runs in a temporary copy of the repository: checkpoints land in the
#: real one, e.g. LOSSBENCH_WORK_ROOT=$PWD)
WORK_ROOT_ENV = "LOSSBENCH_WORK_ROOT"
KNOBS = ("gamma", "alpha", "neg_pos_ratio", "lambda_noobj", "obj_target")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    src = parser.add_argument_group("what to train")
    src.add_argument("--profile", help="profile of the params file: trains with its config")
    src.add_argument("--params", default="params.yaml", help="params file (default params.yaml)")
    src.add_argument("--config", help="an MMDetection config (instead of a profile's)")
    src.add_argument("--family", required=True, choices=sorted(FAMILIES))
    src.add_argument("--seed", type=int, required=True)
    knobs = parser.add_argument_group("knobs (the family's defaults otherwise)")
    knobs.add_argument("--gamma", help="focal: focusing parameter, >= 0")
    knobs.add_argument("--alpha", help="focal: positive weight in [0, 1]")
    knobs.add_argument("--neg-pos-ratio", help="ohem: negatives per positive (> 0) or 'all'")
    knobs.add_argument("--lambda-noobj", help="sse: no-object weight, >= 0")
    knobs.add_argument("--obj-target", choices=["iou", "one"], help="sse: objectness target")
    io = parser.add_argument_group("paths")
    io.add_argument("--data-root", required=True, help="folder the images' file_name are relative to")
    io.add_argument("--ann-dir", required=True, help="prepared {train,val,test}.json folder")
    io.add_argument("--out", required=True, help="run folder (metrics, config, env, curves)")
    io.add_argument("--work-dir", help=f"checkpoints and logs (default OUT/work; relative to "
                                       f"${WORK_ROOT_ENV} when that is set)")
    parser.add_argument("--amp", choices=["none", "fp16", "bf16"],
                        help="mixed precision (default: the config's optim_wrapper); "
                             "bf16 falls back to fp16 on GPUs without bfloat16")
    parser.add_argument("--launcher", choices=["none", "pytorch", "slurm"], default="none",
                        help="'pytorch' under torchrun, 'slurm' under srun (MMEngine's launchers)")
    # parsed by MMEngine's DictAction in run(), once the device is pinned
    parser.add_argument("--cfg-options", nargs="+", default=[], metavar="KEY=VALUE",
                        help="config overrides (MMEngine's DictAction), e.g. train_cfg.max_iters=8")


def cfg_options(items: list[str]) -> dict[str, Any]:
    """``KEY=VALUE`` items parsed as ``tools/train.py`` does (MMEngine's ``DictAction``)."""
    from mmengine.config import DictAction

    ns = argparse.Namespace()
    if items:
        DictAction(option_strings=["--cfg-options"], dest="opts")(None, ns, items)
    return getattr(ns, "opts", {})


def imbalance_from_args(args: argparse.Namespace) -> tuple[dict[str, Any], dict[str, str]]:
    """The validated ``imbalance`` dict and the knob values as given (they name the run)."""
    given = {k: getattr(args, k) for k in KNOBS if getattr(args, k, None) is not None}
    imb: dict[str, Any] = {"type": args.family, **given}
    for k in [k for k in ("gamma", "alpha", "lambda_noobj", "neg_pos_ratio") if k in imb]:
        ratio = k == "neg_pos_ratio"  # a number, or 'all' negatives
        try:
            imb[k] = None if ratio and imb[k].lower() in ("all", "none") else float(imb[k])
        except ValueError:
            what = "a number or 'all'" if ratio else "a number"
            raise ImbalanceConfigError(f"--{k.replace('_', '-')} must be {what}, got {imb[k]!r}") from None
    imb = validate_imbalance(imb, key="--" + args.family)
    spelled = {k: given.get(k, imb[k]) for k, _ in SLUGS[args.family]}
    return imb, spelled


def amp_options(amp: str) -> dict[str, Any]:
    """Config overrides for --amp: 'none' = full precision, 'fp16' / 'bf16' = MMEngine's AmpOptimWrapper."""
    if amp == "none":
        return {"optim_wrapper.type": "OptimWrapper"}
    return {"optim_wrapper.type": "AmpOptimWrapper",
            "optim_wrapper.dtype": "bfloat16" if amp == "bf16" else "float16"}


def check_precision(cfg, log=print) -> None:
    """Mixed precision needs a CUDA GPU; bf16 needs one that has bfloat16 (else fp16)."""
    import torch

    ow = cfg.optim_wrapper
    if ow.get("type") != "AmpOptimWrapper":
        ow.pop("dtype", None)
        return
    if not torch.cuda.is_available():
        raise ValueError("mixed precision (optim_wrapper.type=AmpOptimWrapper in the config, or "
                         "--amp) needs a CUDA GPU; use --amp none to train on CPU")
    if ow.get("dtype") in ("bfloat16", torch.bfloat16) and not torch.cuda.is_bf16_supported():
        ow.dtype = "float16"
        log("this GPU has no bfloat16; mixed precision falls back to float16")


def run(args: argparse.Namespace) -> int:
    def log(msg: str) -> None:
        print(f"lossbench train: {msg}", flush=True)

    # First, before anything imports torch or mmengine (which initialise CUDA, after
    # which CUDA_VISIBLE_DEVICES is ignored): take a GPU of the pool, if one is set.
    from lossbench.devices import pin_device_from_pool

    try:
        device = pin_device_from_pool(log=log)
        from lossbench.config import load_config
        from lossbench.profiles import ProfileError, load_profile

        imbalance, spelled = imbalance_from_args(args)
        if args.config:
            config = Path(args.config)
        elif args.profile:
            config = load_profile(args.params, args.profile).config
            if config is None:
                raise ProfileError(f"{args.params}: profiles.{args.profile}.config is missing")
        else:
            raise ValueError("give --profile (with --params) or --config")
        name = run_name(args.family, spelled, args.seed)
        cfg = load_config(config, data_root=args.data_root, ann_dir=args.ann_dir,
                          imbalance=imbalance, seed=args.seed)
        cfg.merge_from_dict({**cfg_options(args.cfg_options),
                             **(amp_options(args.amp) if args.amp else {})})
        check_precision(cfg, log)
        if args.launcher != "none":
            from lossbench.distributed import setup_distributed

            setup_distributed(cfg, args.launcher)
    except (ImbalanceConfigError, ValueError, FileNotFoundError, OSError) as e:
        print(f"lossbench train: error: {e}", file=sys.stderr)
        return 2
    from lossbench.engine import train_run
    from lossbench.hooks import NonFiniteLossError

    out = Path(args.out)
    work_dir = Path(args.work_dir) if args.work_dir else out / "work"
    if os.environ.get(WORK_ROOT_ENV) and not work_dir.is_absolute():
        work_dir = Path(os.environ[WORK_ROOT_ENV]) / work_dir
    meta = {"profile": args.profile, "config": str(config), "family": args.family,
            "imbalance": imbalance, "knob": SWEPT_KNOB[args.family],
            "value": imbalance[SWEPT_KNOB[args.family]], "seed": args.seed,
            "pool_device": device}
    try:
        rec = train_run(cfg, out, name, meta, work_dir=work_dir, log=log)
    except NonFiniteLossError as e:
        print(f"lossbench train: error: {e}", file=sys.stderr)
        return 3
    if rec["rank"] == 0:
        m, t = rec["metrics"], rec["timing"]
        print(f"{name}: mAP50 {m['mAP50']:.3f}  AP {m['AP']:.3f}  "
              f"({t['wall_time_s']:.0f} s, {t['train_images_per_s']} img/s)")
    return 0
