"""Profiles: one pipeline, four scales (``params.yaml`` → ``profiles.<name>``).

A profile names the config every run of the study trains with (``config``: model, batch, lr, schedule) and the data
it generates or downloads (``dataset``: one of :data:`DATASETS`; ``data``: generator or fetch options; ``prepare``:
options of ``lossbench prepare``). Every error names the file and the key.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

DATASETS = ("synth", "voc2007", "voc0712", "coco2017")


class ProfileError(ValueError):
    """A missing or malformed profile in the params file."""


@dataclass
class Profile:
    name: str
    dataset: str
    config: Path | None
    data: dict[str, Any] = field(default_factory=dict)
    prepare: dict[str, Any] = field(default_factory=dict)
    pretrain: dict[str, Any] | None = None  # how its backbone is pretrained (lossbench.pretrain); None: not here


def load_params(path: str | os.PathLike) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ProfileError(f"params file {path} does not exist")
    try:
        params = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as e:
        raise ProfileError(f"{path}: not valid YAML ({e})") from e
    if not isinstance(params, dict):
        raise ProfileError(f"{path}: expected a mapping at the top level")
    return params


def load_profile(path: str | os.PathLike, name: str) -> Profile:
    """Read and check ``profiles.<name>`` of the params file ``path``."""
    profiles = load_params(path).get("profiles")
    if not isinstance(profiles, dict) or not profiles:
        raise ProfileError(f"{path}: no 'profiles' mapping")
    if name not in profiles:
        raise ProfileError(f"{path}: unknown profile {name!r}; expected one of {sorted(profiles)}")
    p = profiles[name] or {}
    key = f"{path}: profiles.{name}"
    unknown = set(p) - {"config", "dataset", "data", "prepare", "pretrain"}
    if unknown:
        raise ProfileError(f"{key} has unknown keys {sorted(unknown)}; allowed config, dataset, "
                           "data, prepare, pretrain (how a run trains belongs in its config file)")
    if p.get("dataset") not in DATASETS:
        raise ProfileError(f"{key}.dataset must be one of {list(DATASETS)}, got {p.get('dataset')!r}")
    config = p.get("config")  # relative to the params file's folder (the repository)
    if config is not None and not (isinstance(config, str) and (Path(path).parent / config).is_file()):
        raise ProfileError(f"{key}.config must name an existing config file, got {config!r}")
    for part in ("data", "prepare", "pretrain"):
        if not isinstance(p.get(part) or {}, dict):
            raise ProfileError(f"{key}.{part} must be a mapping")
    return Profile(name=name, dataset=p["dataset"], config=Path(path).parent / config if config else None,
                   data=dict(p.get("data") or {}), prepare=dict(p.get("prepare") or {}),
                   pretrain=dict(p["pretrain"]) if p.get("pretrain") else None)


def resolve_dataset(params: str | os.PathLike, name: str, given: str | None,
                    flag: str = "--dataset") -> tuple[Profile, str]:
    """The profile ``name`` and where it lives, checking it agrees with a dataset given on the CLI.
    Raises ``ValueError`` (``ProfileError`` is one) naming the params file and key."""
    prof = load_profile(params, name)
    where = f"{params}: profiles.{name}"
    if given is not None and given != prof.dataset:
        raise ValueError(f"{flag} {given} contradicts {where}.dataset = {prof.dataset}")
    return prof, where
