"""The ``imbalance`` setting of the common head: which family, which knobs.

Pure Python (no MMDetection import), so configs and ``params.yaml`` can be
checked before anything is built. Every error names the key and the allowed
range, and is raised before any training starts.
"""

from __future__ import annotations

import math
from numbers import Real
from typing import Any

# family -> {knob: default}; the first knob is the one the study sweeps.
FAMILIES: dict[str, dict[str, Any]] = {
    "focal": {"gamma": 2.0, "alpha": 0.25},
    "ohem": {"neg_pos_ratio": 3.0},
    "sse": {"lambda_noobj": 0.5, "obj_target": "iou"},
}

# family -> the registered loss module that implements it
LOSS_TYPES = {"focal": "ImbalanceFocalLoss", "ohem": "HardNegativeCELoss", "sse": "YOLOSSELoss"}

# the knob each family's ablation sweeps
SWEPT_KNOB = {"focal": "gamma", "ohem": "neg_pos_ratio", "sse": "lambda_noobj"}

OBJ_TARGETS = ("iou", "one")


class ImbalanceConfigError(ValueError):
    """A bad ``imbalance`` setting; the message names the key and what is allowed."""


def _number(key: str, value: Any, ok=lambda v: True, rule: str = "") -> float:
    """``value`` as a float; an error unless it is a finite number for which ``ok`` holds."""
    if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(float(value)):
        raise ImbalanceConfigError(f"{key} must be a finite number, got {value!r}")
    if not ok(float(value)):
        raise ImbalanceConfigError(f"{key} must be {rule}, got {float(value)}")
    return float(value)


def validate_imbalance(cfg: dict, key: str = "model.bbox_head.imbalance") -> dict:
    """Check an ``imbalance`` dict such as ``dict(type='focal', gamma=2.0, alpha=0.25)`` (at ``key``
    in error messages) and return it with the family's defaults filled in.

    Raises:
        ImbalanceConfigError: unknown family, a knob of another family, or a
            value outside its range (gamma >= 0, alpha in [0, 1],
            neg_pos_ratio > 0 or None, lambda_noobj >= 0, obj_target in
            {'iou', 'one'}).
    """
    if not isinstance(cfg, dict):
        raise ImbalanceConfigError(f"{key} must be a dict with a 'type', got {cfg!r}")
    family = cfg.get("type")
    if family not in FAMILIES:
        raise ImbalanceConfigError(f"{key}.type must be one of {sorted(FAMILIES)}, got {family!r}")
    out = {"type": family, **FAMILIES[family]}
    for name, value in cfg.items():
        if name == "type":
            continue
        if name not in FAMILIES[family]:
            owner = [f for f, knobs in FAMILIES.items() if name in knobs]
            hint = (f"it belongs to family {owner[0]!r}" if owner
                    else f"{family!r} accepts {sorted(FAMILIES[family])}")
            raise ImbalanceConfigError(f"{key}.{name} is not a knob of family {family!r}: {hint}")
        out[name] = value

    k = f"{key}."
    if family == "focal":
        out["gamma"] = _number(k + "gamma", out["gamma"], lambda v: v >= 0, ">= 0")
        out["alpha"] = _number(k + "alpha", out["alpha"], lambda v: 0.0 <= v <= 1.0, "in [0, 1]")
    elif family == "ohem":
        ratio = out["neg_pos_ratio"]
        every = ratio is None or (isinstance(ratio, str) and ratio == "all")
        out["neg_pos_ratio"] = None if every else _number(k + "neg_pos_ratio", ratio, lambda v: v > 0,
                                                           "> 0 (or None / 'all' for every negative)")
    else:
        out["lambda_noobj"] = _number(k + "lambda_noobj", out["lambda_noobj"], lambda v: v >= 0, ">= 0")
        if out["obj_target"] not in OBJ_TARGETS:
            raise ImbalanceConfigError(f"{k}obj_target must be one of {list(OBJ_TARGETS)}, got {out['obj_target']!r}")
    return out


def loss_cfg(imbalance: dict, key: str = "model.bbox_head.imbalance") -> dict:
    """The ``loss_cls`` config of the registered module implementing ``imbalance``."""
    cfg = validate_imbalance(imbalance, key)
    knobs = {k: v for k, v in cfg.items() if k not in ("type", "obj_target")}
    return {"type": LOSS_TYPES[cfg["type"]], **knobs}
