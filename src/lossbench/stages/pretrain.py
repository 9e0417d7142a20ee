"""Pretrain the profile's backbone as a multi-label shape classifier on images no detection set holds.

Reads profiles.NAME.pretrain of --params (the generator's seed and sizes, steps, batch, lr; see
lossbench.pretrain.PretrainSpec) and the backbone and input normalisation of the profile's config,
renders the pretraining images in memory from their own generator seed (one no detection set
uses: tests/test_pretrain.py checks params.yaml), trains, and writes OUT/backbone.pth (the backbone's state dict, half
precision) and OUT/metrics.json (cost and held-out accuracy), the folder replaced as a whole.
A profile without `pretrain` (voc, coco: their configs load ImageNet weights) gets only
OUT/metrics.json saying which weights its config loads.
"""

from __future__ import annotations

import argparse
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--profile", required=True, help="profile of the params file")
    parser.add_argument("--params", default="params.yaml", help="params file (default params.yaml)")
    parser.add_argument("--out", required=True, help="folder to write backbone.pth and metrics.json to")


def run(args: argparse.Namespace) -> int:
    from mmengine.config import Config

    from lossbench.pretrain import PretrainSpec, pretrain
    from lossbench.profiles import ProfileError, load_profile
    from lossbench.utils import atomic_path, atomic_write_json

    try:
        prof = load_profile(args.params, args.profile)
        where = f"{args.params}: profiles.{args.profile}.pretrain"
        # the model section only: the config's custom imports (the detection head, hooks) are not needed
        model_cfg = Config.fromfile(str(prof.config), import_custom_modules=False).model.to_dict()
        if prof.pretrain is None:
            with atomic_path(args.out) as tmp:
                tmp.mkdir()
                atomic_write_json(tmp / "metrics.json", {
                    "pretrain": None, "backbone_init_cfg": model_cfg["backbone"].get("init_cfg")})
            print(f"{args.profile}: no pretraining (the config's backbone init_cfg is "
                  f"{model_cfg['backbone'].get('init_cfg')}); wrote {args.out}/metrics.json")
            return 0
        spec = PretrainSpec.from_mapping(prof.pretrain, where)
    except (ProfileError, ValueError) as e:
        print(f"lossbench pretrain: error: {e}", file=sys.stderr)
        return 2
    m = pretrain(spec, model_cfg, args.out)
    size = m["checkpoint"]["bytes"] / 1e6
    print(f"pretrain: {m['backbone_parameters']:,} backbone parameters, held-out mAP {m['held_out']['mAP']:.1f}, "
          f"{m['seconds']['total'] / 60:.1f} min; wrote {args.out}/backbone.pth ({size:.1f} MB)")
    return 0
