"""Profiles: one pipeline, three scales (``params.yaml`` → ``profiles.<name>``).

A profile says which data the study uses and how it trains::

    profiles:
      synth:
        dataset: synth                 # synth | voc2007 | voc0712 | coco2017
        data: {n_train: 800, ...}      # synth: generator options; real data: fetch options
        prepare: {subset: null}        # optional N images per split
        configs: {focal: configs/..., ohem: configs/..., sse: configs/...}
        train: {max_iters: 600, batch_size: 8, lr: 0.002, num_workers: 0}

Every error names the file and the key.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from lossbench.models.imbalance import FAMILIES

DATASETS = ("synth", "voc2007", "voc0712", "coco2017")
# train.<key> -> (config key, type)
TRAIN_OPTIONS = {
    "batch_size": ("train_dataloader.batch_size", int),
    "num_workers": ("train_dataloader.num_workers", int),
    "lr": ("optim_wrapper.optimizer.lr", float),
    "test_batch_size": ("test_dataloader.batch_size", int),
}
TRAIN_KEYS = set(TRAIN_OPTIONS) | {"max_iters", "amp"}


class ProfileError(ValueError):
    """A missing or malformed profile in the params file."""


@dataclass
class Profile:
    name: str
    dataset: str
    configs: dict[str, str]
    data: dict[str, Any] = field(default_factory=dict)
    prepare: dict[str, Any] = field(default_factory=dict)
    train: dict[str, Any] = field(default_factory=dict)
    source: str = "params.yaml"

    def config_for(self, family: str) -> Path:
        key = f"{self.source}: profiles.{self.name}.configs.{family}"
        if family not in self.configs:
            raise ProfileError(f"{key} is missing")
        path = Path(self.configs[family])
        if not path.is_file():
            raise ProfileError(f"{key} = {path} does not exist")
        return path

    def train_options(self, amp: str | None = None) -> dict[str, Any]:
        """``train`` settings as config overrides (dotted keys); ``amp`` overrides ``train.amp``
        (``'none'``, ``'fp16'`` or ``'bf16'``)."""
        opts: dict[str, Any] = {}
        for k, v in self.train.items():
            if k in TRAIN_OPTIONS and v is not None:
                opts[TRAIN_OPTIONS[k][0]] = v
        if self.train.get("num_workers") == 0:
            opts["train_dataloader.persistent_workers"] = False
        opts.update(amp_options(amp if amp is not None else self.train.get("amp")))
        return opts


def amp_options(amp: str | bool | None) -> dict[str, Any]:
    """Config overrides for a mixed-precision setting: None/False/'none' = full precision,
    True/'fp16' = float16, 'bf16' = bfloat16 (MMEngine's ``AmpOptimWrapper``)."""
    if amp in (None, False, "none"):
        return {}
    if amp not in (True, "fp16", "bf16"):
        raise ProfileError(f"amp must be none, fp16 or bf16, got {amp!r}")
    return {"optim_wrapper.type": "AmpOptimWrapper",
            "optim_wrapper.dtype": "bfloat16" if amp == "bf16" else "float16"}


def load_params(path: str | os.PathLike) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ProfileError(f"params file {path} does not exist")
    with open(path, encoding="utf-8") as f:
        try:
            params = yaml.safe_load(f) or {}
        except yaml.YAMLError as e:
            raise ProfileError(f"{path}: not valid YAML ({e})") from e
    if not isinstance(params, dict):
        raise ProfileError(f"{path}: expected a mapping at the top level")
    return params


def load_profile(path: str | os.PathLike, name: str) -> Profile:
    """Read and check ``profiles.<name>`` of the params file ``path``."""
    params = load_params(path)
    profiles = params.get("profiles")
    if not isinstance(profiles, dict) or not profiles:
        raise ProfileError(f"{path}: no 'profiles' mapping")
    if name not in profiles:
        raise ProfileError(f"{path}: unknown profile {name!r}; expected one of {sorted(profiles)}")
    p = profiles[name] or {}
    key = f"{path}: profiles.{name}"
    if p.get("dataset") not in DATASETS:
        raise ProfileError(f"{key}.dataset must be one of {list(DATASETS)}, got {p.get('dataset')!r}")
    configs = p.get("configs")
    if not isinstance(configs, dict) or set(configs) != set(FAMILIES):
        raise ProfileError(f"{key}.configs must map each of {sorted(FAMILIES)} to a config file, "
                           f"got {configs!r}")
    for part in ("data", "prepare", "train"):
        if not isinstance(p.get(part, {}) or {}, dict):
            raise ProfileError(f"{key}.{part} must be a mapping")
    train = p.get("train", {}) or {}
    unknown = set(train) - TRAIN_KEYS
    if unknown:
        raise ProfileError(f"{key}.train has unknown keys {sorted(unknown)}; allowed {sorted(TRAIN_KEYS)}")
    for k, (_, typ) in TRAIN_OPTIONS.items():
        v = train.get(k)
        if v is None:
            continue
        lowest = 0 if k == "num_workers" else 1e-12
        if isinstance(v, bool) or not isinstance(v, typ if typ is int else (int, float)) or v < lowest:
            what = "an integer >= 0" if k == "num_workers" else f"a positive {typ.__name__}"
            raise ProfileError(f"{key}.train.{k} must be {what}, got {v!r}")
    mi = train.get("max_iters")
    if mi is not None and (isinstance(mi, bool) or not isinstance(mi, int) or mi < 1):
        raise ProfileError(f"{key}.train.max_iters must be an integer >= 1, got {mi!r}")
    if train.get("amp") not in (None, False, True, "fp16", "bf16"):
        raise ProfileError(f"{key}.train.amp must be false, true/'fp16' or 'bf16', got {train['amp']!r}")
    return Profile(name=name, dataset=p["dataset"], configs=dict(configs),
                   data=dict(p.get("data") or {}), prepare=dict(p.get("prepare") or {}),
                   train=dict(train), source=str(path))


def resolve_dataset(params: str | os.PathLike, name: str, given: str | None,
                    flag: str = "--dataset") -> tuple[Profile, str]:
    """The profile ``name`` and where it lives, checking it agrees with a dataset given on the CLI.

    Raises ``ValueError`` naming the params file and key (as the stage CLIs report it).
    """
    try:
        prof = load_profile(params, name)
    except ProfileError as e:
        raise ValueError(str(e)) from e
    where = f"{params}: profiles.{name}"
    if given is not None and given != prof.dataset:
        raise ValueError(f"{flag} {given} contradicts {where}.dataset = {prof.dataset}")
    return prof, where
