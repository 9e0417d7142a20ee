"""The loss families of the study, defined once: :data:`FAMILIES`.

Each :class:`Family` says what the rest of the package needs to know about a remedy for the foreground/background
imbalance: its knobs (name, range, paper default, how a folder and a table spell them, the CLI flag), the knob its
ablation sweeps, the registered loss module that implements it, and how ``params.yaml`` writes its grid and paper
default. Naming (:func:`run_name`), validation (:func:`validate_imbalance`), the train CLI, selection, collection and
the report read it; adding a family is one entry here plus its loss module.

Pure Python (no torch, no MMDetection), so configs and ``params.yaml`` can be checked before
anything is built. Every error names the key and the allowed range.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from numbers import Real
from typing import Any


class ImbalanceConfigError(ValueError):
    """A bad ``imbalance`` setting; the message names the key and what is allowed."""


@dataclass(frozen=True)
class Knob:
    """One knob of a family."""

    name: str  # key in the imbalance dict, params.yaml and metrics.json; CLI flag: --name with dashes
    default: Any  # the paper's value
    # ">= 0", "in [0, 1]", "in [0, 1)", "integer >= 1", "> 0 or all" (None / 'all': every negative) or allowed strings
    rule: str | tuple[str, ...]
    slug: str | None  # how a run's folder spells it (ratio3); None: a switch outside a setting's identity (obj_target)
    symbol: str = ""  # the knob in prose (γ, neg:pos ratio)
    label: str = "{}"  # a value in tables, {} standing for the value ('all' prints as all)
    help: str = ""  # the CLI help

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def choices(self) -> tuple[str, ...] | None:
        """The allowed strings of a switch; None for a number."""
        return self.rule if isinstance(self.rule, tuple) else None

    @property
    def accepts_all(self) -> bool:
        """Whether None / ``'all'`` (every negative) is a value."""
        return self.rule == "> 0 or all"

    @property
    def integer(self) -> bool:
        """Whether the value is a whole number (validated to an ``int``)."""
        return self.rule == "integer >= 1"


@dataclass(frozen=True)
class Family:
    """One remedy: its knobs (the first is the one its ablation sweeps), its loss and names."""

    name: str  # the family's key (--family, folders, params.yaml)
    label: str  # its name in tables and figures
    loss_type: str  # the registered loss module (lossbench.models.losses.modules)
    knobs: tuple[Knob, ...]  # the swept one first
    knob_label: str  # the setting's column header
    # where params.yaml lists the grid under <family>: the swept knob's name (a list of its values) or
    # "settings" (a list of {knob: value})
    grid_key: str

    @property
    def swept(self) -> str:
        return self.knobs[0].name

    @property
    def setting_knobs(self) -> tuple[Knob, ...]:
        """The knobs that name a setting, in folder order."""
        return tuple(k for k in self.knobs if k.slug is not None)

    @property
    def defaults(self) -> dict[str, Any]:
        return {k.name: k.default for k in self.knobs}


_FAMILIES = (
    Family("focal", "RetinaNet focal loss", "ImbalanceFocalLoss",
           (Knob("gamma", 2.0, ">= 0", "gamma", "γ", "γ {}", "focal: focusing parameter, >= 0"),
            Knob("alpha", 0.25, "in [0, 1]", "alpha", "α", "α {}", "focal: positive weight in [0, 1]")),
           knob_label="γ, α", grid_key="settings"),
    Family("ohem", "SSD hard negative mining", "HardNegativeCELoss",
           (Knob("neg_pos_ratio", 3.0, "> 0 or all", "ratio", "neg:pos ratio", "{}:1",
                 "ohem: negatives per positive (> 0) or 'all'"),),
           knob_label="neg:pos", grid_key="neg_pos_ratio"),
    Family("sse", "YOLO v1 sum-squared error", "YOLOSSELoss",
           (Knob("lambda_noobj", 0.5, ">= 0", "lambda", "λ_noobj", "λ {}", "sse: no-object weight, >= 0"),
            Knob("obj_target", "iou", ("iou", "one"), None, help="sse: objectness target")),
           knob_label="λ_noobj", grid_key="lambda_noobj"),
    Family("ghm", "GHM-C gradient harmonizing", "ImbalanceGHMCLoss",
           (Knob("bins", 30, "integer >= 1", "bins", "M", "M {}",
                 "ghm: number of gradient-norm bins (unit regions), an integer >= 1"),
            Knob("momentum", 0.75, "in [0, 1)", "momentum", "momentum", "mom. {}",
                 "ghm: momentum of the bin counts' moving average, in [0, 1) (0: this batch's counts)")),
           knob_label="M, momentum", grid_key="settings"),
    Family("qfl", "GFL quality focal loss", "ImbalanceQualityFocalLoss",
           (Knob("beta", 2.0, ">= 0", "beta", "β", "β {}", "qfl: modulating exponent, >= 0"),),
           knob_label="β", grid_key="beta"),
    Family("vfl", "VarifocalNet varifocal loss", "ImbalanceVarifocalLoss",
           (Knob("vfl_gamma", 2.0, ">= 0", "gamma", "γ", "γ {}", "vfl: negatives' modulating exponent, >= 0"),
            Knob("vfl_alpha", 0.75, "in [0, 1]", "alpha", "α", "α {}", "vfl: negatives' weight in [0, 1]")),
           knob_label="γ, α", grid_key="settings"),
    Family("ce_prior", "Sampling-free CE (prior bias, guided scaling)", "SamplingFreeCELoss",
           (Knob("scaling", "on", ("on", "off"), "scaling", "guided loss scaling", "scaling {}",
                 "ce_prior: guided loss scaling (classification loss rescaled to the box loss's magnitude)"),),
           knob_label="guided scaling", grid_key="scaling"))
#: family name -> its definition, in the report's order
FAMILIES: dict[str, Family] = {f.name: f for f in _FAMILIES}
FAMILY_ORDER: tuple[str, ...] = tuple(FAMILIES)
#: every knob of every family (a knob name belongs to one family)
KNOBS: dict[str, Knob] = {k.name: k for f in _FAMILIES for k in f.knobs}


def _check_table() -> None:
    """The table's own rules: family and knob names unique, slugs unique within a family."""
    names = [k.name for f in _FAMILIES for k in f.knobs]
    if len(FAMILIES) != len(_FAMILIES) or len(KNOBS) != len(names):
        raise AssertionError(f"family and knob names must be unique: {[f.name for f in _FAMILIES]}, {names}")
    for f in _FAMILIES:
        slugs = [k.slug for k in f.setting_knobs]
        if len(set(slugs)) != len(slugs):
            raise AssertionError(f"family {f.name}: folder slugs {slugs} must be unique")
        if f.grid_key != "settings" and (len(f.setting_knobs) != 1 or f.grid_key != f.swept):
            raise AssertionError(f"family {f.name}: grid_key must be 'settings' or its one setting knob {f.swept!r}")


_check_table()


def family(name: str) -> Family:
    if name not in FAMILIES:
        raise ValueError(f"unknown family {name!r}; expected one of {sorted(FAMILIES)}")
    return FAMILIES[name]


# ------------------------------------------------------------------ validation
def _number(key: str, value: Any, rule: str) -> float | int:
    """``value`` checked against ``rule``: a float, or an ``int`` for ``"integer >= 1"``."""
    if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(float(value)):
        raise ImbalanceConfigError(f"{key} must be a finite number, got {value!r}")
    v = float(value)
    ok = {">= 0": v >= 0, "in [0, 1]": 0.0 <= v <= 1.0, "in [0, 1)": 0.0 <= v < 1.0, "> 0 or all": v > 0,
          "integer >= 1": v >= 1 and v.is_integer()}[rule]
    if not ok:
        shown = {"> 0 or all": "> 0 (or None / 'all' for every negative)",
                 "integer >= 1": "an integer >= 1"}.get(rule, rule)
        raise ImbalanceConfigError(f"{key} must be {shown}, got {value if rule == 'integer >= 1' else v}")
    return int(v) if rule == "integer >= 1" else v


def _check(key: str, knob: Knob, value: Any) -> Any:
    if knob.choices:
        if isinstance(value, bool) or value not in knob.choices:
            # YAML 1.1 reads unquoted on / off / yes / no as booleans
            hint = " (a YAML boolean: quote the value, e.g. 'on')" if isinstance(value, bool) else ""
            raise ImbalanceConfigError(f"{key} must be one of {list(knob.choices)}, got {value!r}{hint}")
        return value
    if knob.accepts_all and (value is None or (isinstance(value, str) and value == "all")):
        return None
    return _number(key, value, knob.rule)


def validate_imbalance(cfg: dict, key: str = "model.bbox_head.imbalance") -> dict:
    """Check an ``imbalance`` dict such as ``dict(type='focal', gamma=2.0, alpha=0.25)`` (at ``key``
    in error messages) and return it with the family's defaults filled in.

    Raises:
        ImbalanceConfigError: unknown family, a knob of another family, or a value outside
            its range (:attr:`Knob.rule`).
    """
    if not isinstance(cfg, dict):
        raise ImbalanceConfigError(f"{key} must be a dict with a 'type', got {cfg!r}")
    name = cfg.get("type")
    if name not in FAMILIES:
        raise ImbalanceConfigError(f"{key}.type must be one of {sorted(FAMILIES)}, got {name!r}")
    fam = FAMILIES[name]
    out = {"type": name, **fam.defaults}
    for k, value in cfg.items():
        if k == "type":
            continue
        if k not in out:
            owner = [f.name for f in _FAMILIES if k in f.defaults]
            hint = f"it belongs to family {owner[0]!r}" if owner else f"{name!r} accepts {sorted(fam.defaults)}"
            raise ImbalanceConfigError(f"{key}.{k} is not a knob of family {name!r}: {hint}")
        out[k] = value
    for knob in fam.knobs:
        out[knob.name] = _check(f"{key}.{knob.name}", knob, out[knob.name])
    return out


def loss_cfg(imbalance: dict, key: str = "model.bbox_head.imbalance") -> dict:
    """The ``loss_cls`` config of the registered module implementing ``imbalance``: its type and every knob."""
    cfg = validate_imbalance(imbalance, key)
    return {"type": FAMILIES[cfg["type"]].loss_type, **{k: v for k, v in cfg.items() if k != "type"}}


# ------------------------------------------------------------------ settings and names
def canon(value: Any) -> float | str:
    """A knob value as compared: a float, or ``"all"`` for every negative (``None`` / ``"all"``)."""
    if value is None or value == "all":
        return "all"
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ValueError(f"knob value {value!r} is neither a number nor 'all'") from None


def setting_key(name: str, setting: Mapping[str, Any]) -> tuple[tuple[str, float | str], ...]:
    """The identity of a setting: ``(knob, value)`` pairs in folder order, values canonical
    (``3`` and ``3.0`` are one setting)."""
    knobs = family(name).setting_knobs
    missing = [k.name for k in knobs if k.name not in setting]
    if missing:
        raise ValueError(f"{name} setting {dict(setting)!r} lacks {missing}")
    return tuple((k.name, _canon_knob(name, k, setting[k.name])) for k in knobs)


def _canon_knob(name: str, knob: Knob, value: Any) -> float | str:
    """:func:`canon` for a number; a switch's value (``'on'``) as it is, once checked against its choices."""
    if not knob.choices:
        return canon(value)
    if isinstance(value, bool) or value not in knob.choices:
        hint = " (a YAML boolean: quote the value, e.g. 'on')" if isinstance(value, bool) else ""
        raise ValueError(f"{name} setting: {knob.name} must be one of {list(knob.choices)}, got {value!r}{hint}")
    return value


def slug(name: str, setting: Mapping[str, Any]) -> str:
    """The setting's folder name under ``<family>/``: ``gamma2.0_alpha0.25``, ``ratio3``, ``ratioall``,
    ``bins30_momentum0.75``, ``scalingon``.

    Knob values are printed exactly as given (``params.yaml``'s spelling, which DVC
    interpolates with ``str()``: ``2.0`` stays ``2.0``, ``3`` stays ``3``); None prints as ``all``.
    """
    knobs = family(name).setting_knobs
    missing = [k.name for k in knobs if k.name not in setting]
    if missing:
        raise ValueError(f"{name} run: missing knob(s) {missing} in {dict(setting)!r}")
    return "_".join(f"{k.slug}{'all' if setting[k.name] is None else setting[k.name]}" for k in knobs)


def run_name(name: str, setting: Mapping[str, Any], seed: int | str) -> str:
    """The one name of a grid run: ``<family>/<slug>/seed<seed>``, its folder under
    ``runs/<profile>/``, the ``run`` field of its ``metrics.json`` and its row in the report.

    >>> run_name("ohem", {"neg_pos_ratio": 3}, 0)
    'ohem/ratio3/seed0'
    >>> run_name("focal", {"gamma": 2.0, "alpha": 0.25}, 1)
    'focal/gamma2.0_alpha0.25/seed1'
    """
    return f"{name}/{slug(name, setting)}/seed{seed}"


def _g(v: float | str) -> str:
    return v if isinstance(v, str) else f"{v:g}"


def setting_label(name: str, setting: Mapping[str, Any]) -> str:
    """How a setting is printed: ``γ 2, α 0.25``, ``3:1`` (neg:pos) or ``all``, ``λ 0.5``, ``scaling on``."""
    knobs = {k.name: k for k in family(name).setting_knobs}
    return ", ".join("all" if v == "all" else knobs[k].label.format(_g(v)) for k, v in setting_key(name, setting))


def knob_value(name: str, setting: Mapping[str, Any]) -> float:
    """The swept knob as a number for plots and grid edges; ``all`` negatives -> +inf; a switch
    (ce_prior's ``scaling``) -> the position of its value in :attr:`Knob.choices` (on 0, off 1)."""
    fam = family(name)
    v = dict(setting_key(name, setting))[fam.swept]
    if fam.knobs[0].choices:
        return float(fam.knobs[0].choices.index(v))
    return math.inf if v == "all" else float(v)


def grid_of(name: str, spec: Mapping[str, Any], where: str = "params") -> list[dict[str, Any]]:
    """The settings of a family's grid in ``params.yaml``'s order and spelling, from its section
    ``spec`` (``params[<family>]``)."""
    fam = family(name)
    if fam.grid_key not in spec:
        raise KeyError(f"{where}: missing key {name}.{fam.grid_key}")
    values = spec[fam.grid_key]
    if fam.grid_key == "settings":
        return [dict(s) for s in values]
    return [{fam.grid_key: v} for v in values]


def default_of(name: str, spec: Mapping[str, Any], where: str = "params") -> dict[str, Any]:
    """A family's paper default from its ``params.yaml`` section: ``default`` is a setting
    (``{gamma: 2.0, alpha: 0.25}``) or, for a one-knob setting, the value (``3``)."""
    if "default" not in spec:
        raise KeyError(f"{where}: missing key {name}.default")
    value = spec["default"]
    if isinstance(value, Mapping):
        return dict(value)
    knobs = family(name).setting_knobs
    if len(knobs) != 1:
        raise ValueError(f"{where}: {name}.default must be a mapping of {[k.name for k in knobs]}, got {value!r}")
    return {knobs[0].name: value}
