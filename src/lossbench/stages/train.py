"""Train and evaluate one run of the study: one config, one knob value of one family, one seed.

The config (a profile's, from params.yaml: profiles.<name>.config, or --config)
says how the run trains; this command adds only the data paths, the family's
knob, the seed and the work dir, then MMEngine's Runner trains and tests it
(lossbench.training.engine). A killed or re-run training resumes from its newest complete
checkpoint when nothing that determines its result changed (lossbench.training.resume).

Distributed: `torchrun --nproc_per_node=N -m lossbench train --launcher pytorch ...`
or `srun ... lossbench train --launcher slurm ...`; only rank 0 writes OUT. With
LOSSBENCH_GPUS=0,1,... a single-process run first takes a free GPU of that pool
(lossbench.training.devices), before anything can initialise CUDA.

Examples:
  lossbench train --profile synth --family focal --gamma 2.0 --alpha 0.25 --seed 0 \\
      --data-root data/synth/raw --ann-dir data/synth/prepared \\
      --out runs/synth/focal/gamma2.0_alpha0.25/seed0
  lossbench train --profile synth --family ohem --choose best --selection runs/synth/selection.json \
      --seed 3 ... --out runs/synth/extra/best/ohem/seed3
  lossbench train ... --print-config   # a run's full config from the commit, as it trains
  lossbench train --profile synth --family sse --choose default --prior-prob none --seed 0 \
      ... --out runs/synth/prior_off/sse/seed0
  lossbench train --config configs/smoke/retinanet_r18n_fpn_smoke.py --family ohem \\
      --neg-pos-ratio all --seed 0 ... --cfg-options train_cfg.max_iters=8
  lossbench train --profile synth --family ghm --bins 30 --momentum 0.75 --seed 0 ... \\
      --out runs/synth/ghm/bins30_momentum0.75/seed0
  lossbench train --profile synth --family ce_prior --scaling off --cls-weight 2 --seed 0 ...
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from pathlib import Path
from typing import Any

from lossbench.families import FAMILIES, KNOBS, ImbalanceConfigError, run_name, validate_imbalance

#: a relative --work-dir is taken relative to this folder when set (lossbench.queue sets it)
WORK_ROOT_ENV = "LOSSBENCH_WORK_ROOT"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    src = parser.add_argument_group("what to train")
    src.add_argument("--profile", help="profile of the params file: trains with its config")
    src.add_argument("--params", default="params.yaml", help="params file (default params.yaml)")
    src.add_argument("--config", help="an MMDetection config (instead of a profile's)")
    src.add_argument("--family", required=True, choices=sorted(FAMILIES))
    src.add_argument("--seed", type=int, required=True)
    knobs = parser.add_argument_group("knobs (the family's defaults otherwise)")
    for knob in KNOBS.values():
        knobs.add_argument(knob.flag, help=knob.help,
                           **({"choices": list(knob.choices)} if knob.choices else {}))
    knobs.add_argument("--choose", choices=["default", "best"],
                       help="instead of knob values: the family's paper default (params file: "
                            "<family>.default) or its val-selected best (--selection)")
    knobs.add_argument("--selection", help="selection file of `lossbench select` (for --choose best)")
    knobs.add_argument("--prior-prob", help="pi of the prior-probability bias init, or 'none' "
                                            "(every bias starts at 0); default: the config's")
    knobs.add_argument("--cls-weight", metavar="W",
                       help="weight of the classification loss (a number > 0), every family's loss_weight "
                            "(model.bbox_head.cls_weight); default: the config's, else 1")
    io = parser.add_argument_group("paths")
    io.add_argument("--data-root", required=True, help="folder the images' file_name are relative to")
    io.add_argument("--ann-dir", required=True, help="prepared {train,val,test}.json folder")
    io.add_argument("--out", required=True, help="run folder (metrics, config, env, curves)")
    io.add_argument("--work-dir", help=f"checkpoints and logs (default OUT/work; relative to "
                                       f"${WORK_ROOT_ENV} when that is set)")
    parser.add_argument("--iters", type=int, metavar="N",
                        help="a complete schedule of N iterations instead of the config's (warm-up and "
                             "decay scaled with it); the run's role becomes calibration")
    parser.add_argument("--val-every", type=float, metavar="F",
                        help="evaluate val every F of the schedule (a fraction of max_iters / "
                             "max_epochs), from --val-from on; default: the config's val_interval")
    parser.add_argument("--val-from", type=float, metavar="F", default=None,
                        help="first val evaluation at this fraction of the schedule (default F)")
    parser.add_argument("--amp", choices=["none", "fp16", "bf16"],
                        help="mixed precision (default: the config's optim_wrapper); "
                             "bf16 falls back to fp16 on GPUs without bfloat16")
    parser.add_argument("--launcher", choices=["none", "pytorch", "slurm"], default="none",
                        help="'pytorch' under torchrun, 'slurm' under srun (MMEngine's launchers)")
    # parsed by MMEngine's DictAction in run(), once the device is pinned
    parser.add_argument("--cfg-options", nargs="+", default=[], metavar="KEY=VALUE",
                        help="config overrides (MMEngine's DictAction), e.g. train_cfg.max_iters=8")
    parser.add_argument("--print-config", action="store_true",
                        help="print the run's resolved config (paths relative to the working directory) "
                             "and its digest, as metrics.json records it, and exit without training")


def cfg_options(items: list[str]) -> dict[str, Any]:
    """``KEY=VALUE`` items parsed as ``tools/train.py`` does (MMEngine's ``DictAction``)."""
    from mmengine.config import DictAction

    ns = argparse.Namespace()
    if items:
        DictAction(option_strings=["--cfg-options"], dest="opts")(None, ns, items)
    return getattr(ns, "opts", {})


def chosen_setting(args: argparse.Namespace) -> dict[str, str]:
    """Knob values of ``--choose default`` (``<family>.default`` in the params file) or ``--choose best``
    (``families.<family>.best`` of the ``--selection`` file), as strings."""
    from lossbench.utils import read_json

    knobs = [k.name for k in FAMILIES[args.family].setting_knobs]
    if any(getattr(args, k, None) is not None for k in knobs):
        raise ValueError("--choose replaces the knob values: give one or the other")
    if args.choose == "default":
        from lossbench.profiles import load_params

        setting = (load_params(args.params).get(args.family) or {}).get("default")
        where = f"{args.params}: {args.family}.default"
    else:
        if not args.selection:
            raise ValueError("--choose best needs --selection (the output of `lossbench select`)")
        setting = ((read_json(args.selection).get("families") or {}).get(args.family) or {}).get("best")
        where = f"{args.selection}: families.{args.family}.best"
    if setting is not None and not isinstance(setting, dict):
        setting = {FAMILIES[args.family].swept: setting}
    missing = [k for k in knobs if k not in (setting or {})]
    if setting is None or missing:
        raise ValueError(f"{where} is missing or lacks {missing or knobs}")
    booleans = [k for k in knobs if isinstance(setting[k], bool)]
    if booleans:  # YAML 1.1 reads unquoted on / off as true / false
        raise ValueError(f"{where}: {booleans[0]} is the YAML boolean {setting[booleans[0]]}; quote it, e.g. 'on'")
    return {k: "all" if setting[k] in (None, "all") else str(setting[k]) for k in knobs}


def imbalance_from_args(args: argparse.Namespace) -> tuple[dict[str, Any], dict[str, str]]:
    """The validated ``imbalance`` dict and the knob values as given (they name the run)."""
    given = {k: getattr(args, k) for k in KNOBS if getattr(args, k, None) is not None}
    if getattr(args, "choose", None):
        given.update(chosen_setting(args))
    imb: dict[str, Any] = {"type": args.family, **given}
    for k in [k for k in imb if k in KNOBS and not KNOBS[k].choices]:
        ratio = KNOBS[k].accepts_all  # a number, or 'all' negatives
        try:
            imb[k] = None if ratio and imb[k].lower() in ("all", "none") else float(imb[k])
        except ValueError:
            what = "a number or 'all'" if ratio else "a number"
            raise ImbalanceConfigError(f"--{k.replace('_', '-')} must be {what}, got {imb[k]!r}") from None
    imb = validate_imbalance(imb, key="--" + args.family)
    spelled = {k.name: given.get(k.name, imb[k.name]) for k in FAMILIES[args.family].setting_knobs}
    return imb, spelled


def parse_prior(text: str) -> float | None:
    """``--prior-prob``: a probability in (0, 1), or 'none' (None: no prior init)."""
    if text.lower() == "none":
        return None
    try:
        p = float(text)
    except ValueError:
        p = -1.0
    if not 0.0 < p < 1.0:
        raise ValueError(f"--prior-prob must be a probability in (0, 1) or 'none', got {text!r}")
    return p


def parse_cls_weight(text: str) -> float:
    """``--cls-weight``: a finite number > 0."""
    try:
        w = float(text)
    except ValueError:
        w = math.nan
    if not (math.isfinite(w) and w > 0):
        raise ValueError(f"--cls-weight must be a number > 0, got {text!r}")
    return w


def set_cls_weight(cfg, text: str | None) -> None:
    """Set ``model.bbox_head.cls_weight`` from ``--cls-weight``; weight 1 leaves a config without the key as it is
    (its digest, resume fingerprint and run name unchanged)."""
    if text is None:
        return
    w = parse_cls_weight(text)
    if w != 1.0 or "cls_weight" in cfg.model.bbox_head:
        cfg.model.bbox_head.cls_weight = w


def set_validation(cfg, every: float | None, start: float | None) -> None:
    """Validate every ``every`` of the schedule from ``start`` on (fractions in (0, 1]); the last
    iteration / epoch is always validated (MMEngine's loops)."""
    if every is None:
        if start is not None:
            raise ValueError("--val-from needs --val-every")
        return
    start = every if start is None else start
    for name, v in (("--val-every", every), ("--val-from", start)):
        if not 0.0 < v <= 1.0:
            raise ValueError(f"{name} must be a fraction of the schedule in (0, 1], got {v}")
    total = cfg.train_cfg.get("max_iters") or cfg.train_cfg.get("max_epochs")
    cfg.train_cfg.val_interval = max(1, round(every * total))
    cfg.train_cfg.val_begin = max(1, round(start * total))


def amp_options(amp: str) -> dict[str, Any]:
    """Config overrides for --amp: 'none' = full precision, 'fp16' / 'bf16' = MMEngine's AmpOptimWrapper."""
    if amp == "none":
        return {"optim_wrapper.type": "OptimWrapper"}
    return {"optim_wrapper.type": "AmpOptimWrapper", "optim_wrapper.dtype": "bfloat16" if amp == "bf16" else "float16"}


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
    from lossbench.training.devices import pin_device_from_pool

    try:
        device = None if args.print_config else pin_device_from_pool(log=log)
        from lossbench.profiles import ProfileError, load_profile
        from lossbench.training.config import load_config, scale_schedule

        imbalance, spelled = imbalance_from_args(args)
        if args.config:
            config = Path(args.config)
        elif args.profile:
            config = load_profile(args.params, args.profile).config
            if config is None:
                raise ProfileError(f"{args.params}: profiles.{args.profile}.config is missing")
        else:
            raise ValueError("give --profile (with --params) or --config")
        prior_off = args.prior_prob is not None and parse_prior(args.prior_prob) is None
        role = "prior_off" if prior_off else (args.choose or "grid")
        if args.iters is not None:
            role = f"calibration_{role}"
        name = run_name(args.family, spelled, args.seed)
        if role != "grid":  # named by its folder below runs/<study>/ (dvc.yaml), e.g. extra/best/ohem/seed3
            parts = Path(args.out).parts
            name = ("/".join(parts[2:]) if len(parts) > 2 and parts[0] == "runs" else
                    f"{'prior_off' if role == 'prior_off' else 'extra/' + role}/{args.family}/seed{args.seed}")
            if args.iters is not None and not (len(parts) > 2 and parts[0] == "runs"):
                name = f"calibration/{args.iters}/{name}"
        cfg = load_config(config, data_root=args.data_root, ann_dir=args.ann_dir, imbalance=imbalance, seed=args.seed)
        if args.prior_prob is not None:
            cfg.model.bbox_head.prior_prob = parse_prior(args.prior_prob)
        set_cls_weight(cfg, args.cls_weight)
        cfg.merge_from_dict({**cfg_options(args.cfg_options), **(amp_options(args.amp) if args.amp else {})})
        if args.iters is not None:
            scale_schedule(cfg, args.iters)
        set_validation(cfg, args.val_every, args.val_from)
        if not args.print_config:  # the config as given: a mixed-precision one prints on a CPU too
            check_precision(cfg, log)
        if args.launcher != "none" and not args.print_config:
            from lossbench.training.distributed import setup_distributed

            setup_distributed(cfg, args.launcher)
    except (ImbalanceConfigError, ValueError, FileNotFoundError, OSError) as e:
        print(f"lossbench train: error: {e}", file=sys.stderr)
        return 2
    from lossbench.training.engine import finish_config, train_run
    from lossbench.training.hooks import NonFiniteLossError

    out = Path(args.out)
    work_dir = Path(args.work_dir) if args.work_dir else out / "work"
    if os.environ.get(WORK_ROOT_ENV) and not work_dir.is_absolute():
        work_dir = Path(os.environ[WORK_ROOT_ENV]) / work_dir
    finish_config(cfg, out, name, work_dir)
    if args.print_config:
        from lossbench.training.config import config_digest, portable_config

        print(portable_config(cfg).pretty_text)
        print(f"# config_digest: {config_digest(cfg)}")
        return 0
    fam = FAMILIES[args.family]
    meta = {"profile": args.profile, "config": str(config), "family": args.family,
            "imbalance": imbalance, "knob": fam.swept, "value": imbalance[fam.swept], "seed": args.seed,
            "setting": {k.name: imbalance[k.name] for k in fam.setting_knobs},
            "cls_weight": float(cfg.model.bbox_head.get("cls_weight", 1.0)), "role": role,
            "pool_device": device, "data": {"data_root": args.data_root, "ann_dir": args.ann_dir}}
    try:
        rec = train_run(cfg, out, name, meta, work_dir=work_dir, log=log)
    except NonFiniteLossError as e:
        print(f"lossbench train: error: {e}", file=sys.stderr)
        return 3
    if rec["rank"] == 0:
        v, m, t = rec["metrics"]["val"], rec["metrics"]["test"], rec["timing"]
        print(f"{name}: val mAP50 {v['mAP50']:.3f}  test mAP50 {m['mAP50']:.3f}  "
              f"({t['wall_time_s']:.0f} s, {t['train_images_per_s']} img/s)")
    return 0
