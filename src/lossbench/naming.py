"""The one name of a run: ``focal/gamma2.0_alpha0.25/seed0``.

It is the run's folder under ``runs/<profile>/`` as ``dvc.yaml`` spells it,
the ``run`` field of its ``metrics.json``, and the row the report gives it.
Knob values are printed exactly as ``params.yaml`` writes them, because DVC
interpolates them with ``str()`` (``2.0`` stays ``2.0``, ``3`` stays ``3``);
the train stage passes the command-line strings it was given.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

#: family -> (knob, folder slug) pairs, in the order the name lists them
SLUGS: dict[str, tuple[tuple[str, str], ...]] = {
    "focal": (("gamma", "gamma"), ("alpha", "alpha")),
    "ohem": (("neg_pos_ratio", "ratio"),),
    "sse": (("lambda_noobj", "lambda"),),
}


def run_name(family: str, setting: Mapping[str, Any], seed: int | str) -> str:
    """``<family>/<knob slugs and values>/seed<seed>``; ``None`` (every negative) prints as ``all``.

    >>> run_name("ohem", {"neg_pos_ratio": 3}, 0)
    'ohem/ratio3/seed0'
    >>> run_name("focal", {"gamma": 2.0, "alpha": 0.25}, 1)
    'focal/gamma2.0_alpha0.25/seed1'
    """
    if family not in SLUGS:
        raise ValueError(f"unknown family {family!r}; expected one of {sorted(SLUGS)}")
    missing = [k for k, _ in SLUGS[family] if k not in setting]
    if missing:
        raise ValueError(f"{family} run: missing knob(s) {missing} in {dict(setting)!r}")
    tag = "_".join(f"{slug}{'all' if setting[k] is None else setting[k]}"
                   for k, slug in SLUGS[family])
    return f"{family}/{tag}/seed{seed}"
