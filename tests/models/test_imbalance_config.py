"""Validation of the `imbalance` setting: every bad value names its key and range."""

import math

import pytest

from lossbench.families import (
    FAMILIES,
    FAMILY_ORDER,
    KNOBS,
    ImbalanceConfigError,
    default_of,
    grid_of,
    knob_value,
    loss_cfg,
    run_name,
    setting_key,
    setting_label,
    validate_imbalance,
)


@pytest.mark.parametrize("cfg, message", [
    (dict(type="yolo"), r"imbalance.type must be one of \['ce_prior', 'focal', 'ghm', 'ohem', 'qfl', 'sse', "
                        r"'vfl'\], got 'yolo'"),
    (dict(type="focal", gamma=-0.5), r"imbalance.gamma must be >= 0, got -0.5"),
    (dict(type="focal", alpha=1.5), r"imbalance.alpha must be in \[0, 1\], got 1.5"),
    (dict(type="focal", alpha=-0.1), r"imbalance.alpha must be in \[0, 1\], got -0.1"),
    (dict(type="ohem", neg_pos_ratio=0), r"imbalance.neg_pos_ratio must be > 0"),
    (dict(type="ohem", neg_pos_ratio=-3), r"imbalance.neg_pos_ratio must be > 0"),
    (dict(type="sse", lambda_noobj=-1), r"imbalance.lambda_noobj must be >= 0, got -1.0"),
    (dict(type="sse", obj_target="giou"), r"imbalance.obj_target must be one of \['iou', 'one'\]"),
    (dict(type="ohem", gamma=2.0), r"imbalance.gamma is not a knob of family 'ohem': it belongs to family 'focal'"),
    (dict(type="focal", lambda_noobj=0.5), r"imbalance.lambda_noobj is not a knob of family 'focal': it belongs to family 'sse'"),
    (dict(type="sse", neg_pos_ratio=3), r"imbalance.neg_pos_ratio is not a knob of family 'sse': it belongs to family 'ohem'"),
    (dict(type="focal", beta=1), r"imbalance.beta is not a knob of family 'focal': it belongs to family 'qfl'"),
    (dict(type="focal", delta=1), r"imbalance.delta is not a knob of family 'focal': 'focal' accepts \['alpha', "),
    (dict(type="ghm", bins=0), r"imbalance.bins must be an integer >= 1, got 0"),
    (dict(type="ghm", bins=2.5), r"imbalance.bins must be an integer >= 1, got 2.5"),
    (dict(type="ghm", bins="30"), r"imbalance.bins must be a finite number, got '30'"),
    (dict(type="ghm", momentum=1.0), r"imbalance.momentum must be in \[0, 1\), got 1.0"),
    (dict(type="ghm", momentum=-0.1), r"imbalance.momentum must be in \[0, 1\), got -0.1"),
    (dict(type="qfl", beta=-1), r"imbalance.beta must be >= 0, got -1.0"),
    (dict(type="vfl", vfl_gamma=-2), r"imbalance.vfl_gamma must be >= 0, got -2.0"),
    (dict(type="vfl", vfl_alpha=1.5), r"imbalance.vfl_alpha must be in \[0, 1\], got 1.5"),
    (dict(type="vfl", gamma=2.0), r"imbalance.gamma is not a knob of family 'vfl': it belongs to family 'focal'"),
    (dict(type="ce_prior", scaling="yes"), r"imbalance.scaling must be one of \['on', 'off'\], got 'yes'"),
    (dict(type="ce_prior", scaling=True), r"imbalance.scaling must be one of \['on', 'off'\], got True "
                                          r"\(a YAML boolean: quote the value"),
    (dict(type="focal", gamma="2"), r"imbalance.gamma must be a finite number, got '2'"),
    (dict(type="focal", gamma=float("nan")), r"imbalance.gamma must be a finite number"),
])
def test_bad_settings_are_named(cfg, message):
    with pytest.raises(ImbalanceConfigError, match=message):
        validate_imbalance(cfg)


def test_defaults_are_the_papers():
    assert validate_imbalance(dict(type="focal")) == dict(type="focal", gamma=2.0, alpha=0.25)
    assert validate_imbalance(dict(type="ohem")) == dict(type="ohem", neg_pos_ratio=3.0)
    assert validate_imbalance(dict(type="sse")) == dict(type="sse", lambda_noobj=0.5, obj_target="iou")
    assert validate_imbalance(dict(type="ghm")) == dict(type="ghm", bins=30, momentum=0.75)
    assert validate_imbalance(dict(type="qfl")) == dict(type="qfl", beta=2.0)
    assert validate_imbalance(dict(type="vfl")) == dict(type="vfl", vfl_gamma=2.0, vfl_alpha=0.75)
    assert validate_imbalance(dict(type="ce_prior")) == dict(type="ce_prior", scaling="on")


def test_integer_knob_is_an_int():
    cfg = validate_imbalance(dict(type="ghm", bins=10.0, momentum=0))
    assert cfg == dict(type="ghm", bins=10, momentum=0.0) and type(cfg["bins"]) is int


def test_the_table():
    # report order; a knob name belongs to one family; the swept knob first
    assert FAMILY_ORDER == ("focal", "ohem", "sse", "ghm", "qfl", "vfl", "ce_prior")
    assert sum(len(f.knobs) for f in FAMILIES.values()) == len(KNOBS)
    assert {f: FAMILIES[f].swept for f in FAMILY_ORDER} == {
        "focal": "gamma", "ohem": "neg_pos_ratio", "sse": "lambda_noobj", "ghm": "bins", "qfl": "beta",
        "vfl": "vfl_gamma", "ce_prior": "scaling"}
    assert {f: FAMILIES[f].grid_key for f in ("ghm", "qfl", "vfl", "ce_prior")} == {
        "ghm": "settings", "qfl": "beta", "vfl": "settings", "ce_prior": "scaling"}
    assert [KNOBS[k].flag for k in ("vfl_gamma", "vfl_alpha", "bins", "scaling")] == [
        "--vfl-gamma", "--vfl-alpha", "--bins", "--scaling"]


@pytest.mark.parametrize("family, setting, name, label", [
    ("ghm", {"bins": 30, "momentum": 0.75}, "ghm/bins30_momentum0.75/seed0", "M 30, mom. 0.75"),
    ("qfl", {"beta": 2.0}, "qfl/beta2.0/seed0", "β 2"),
    ("vfl", {"vfl_gamma": 2.0, "vfl_alpha": 0.75}, "vfl/gamma2.0_alpha0.75/seed0", "γ 2, α 0.75"),
    ("ce_prior", {"scaling": "on"}, "ce_prior/scalingon/seed0", "scaling on"),
    ("ce_prior", {"scaling": "off"}, "ce_prior/scalingoff/seed0", "scaling off"),
])
def test_new_families_name_their_settings(family, setting, name, label):
    assert run_name(family, setting, 0) == name
    assert setting_label(family, setting) == label


def test_settings_of_a_switch_and_an_integer():
    assert setting_key("ce_prior", {"scaling": "off"}) == (("scaling", "off"),)
    assert [knob_value("ce_prior", {"scaling": v}) for v in ("on", "off")] == [0.0, 1.0]
    with pytest.raises(ValueError, match=r"scaling must be one of \['on', 'off'\], got False \(a YAML boolean"):
        setting_key("ce_prior", {"scaling": False})
    assert setting_key("ghm", {"bins": 30, "momentum": 0.75}) == setting_key("ghm", {"bins": 30.0, "momentum": 0.75})
    assert knob_value("ghm", {"bins": 10, "momentum": 0.0}) == 10.0
    assert math.isinf(knob_value("ohem", {"neg_pos_ratio": "all"}))
    spec = {"ce_prior": {"scaling": ["on", "off"], "default": "on"},
            "ghm": {"settings": [{"bins": 10, "momentum": 0.0}, {"bins": 30, "momentum": 0.75}],
                    "default": {"bins": 30, "momentum": 0.75}},
            "vfl": {"settings": [{"vfl_gamma": 2.0, "vfl_alpha": 0.75}], "default": {"vfl_gamma": 2.0, "vfl_alpha": 0.75}}}
    assert grid_of("ce_prior", spec["ce_prior"]) == [{"scaling": "on"}, {"scaling": "off"}]
    assert default_of("ce_prior", spec["ce_prior"]) == {"scaling": "on"}
    assert grid_of("ghm", spec["ghm"])[0] == {"bins": 10, "momentum": 0.0}
    assert default_of("vfl", spec["vfl"]) == {"vfl_gamma": 2.0, "vfl_alpha": 0.75}


def test_all_negatives_spellings():
    for v in (None, "all"):
        assert validate_imbalance(dict(type="ohem", neg_pos_ratio=v))["neg_pos_ratio"] is None


def test_loss_cfg_maps_family_to_registered_loss():
    assert loss_cfg(dict(type="sse", lambda_noobj=0.1, obj_target="one")) == \
        dict(type="YOLOSSELoss", lambda_noobj=0.1, obj_target="one")
    assert loss_cfg(dict(type="ohem", neg_pos_ratio="all")) == \
        dict(type="HardNegativeCELoss", neg_pos_ratio=None)
    assert loss_cfg(dict(type="ghm")) == dict(type="ImbalanceGHMCLoss", bins=30, momentum=0.75)
    assert loss_cfg(dict(type="qfl", beta=1)) == dict(type="ImbalanceQualityFocalLoss", beta=1.0)
    assert loss_cfg(dict(type="vfl")) == dict(type="ImbalanceVarifocalLoss", vfl_gamma=2.0, vfl_alpha=0.75)
    assert loss_cfg(dict(type="ce_prior", scaling="off")) == dict(type="SamplingFreeCELoss", scaling="off")


@pytest.mark.parametrize("family", FAMILY_ORDER)
def test_every_family_builds_its_registered_loss(family):
    from mmdet.registry import MODELS

    import lossbench.models.registry  # noqa: F401  (registers the losses)

    loss = MODELS.build(loss_cfg(dict(type=family)))
    assert type(loss).__name__ == FAMILIES[family].loss_type
    assert loss.get_cls_channels(3) in (3, 4) and loss.prior_bias(3, 0.01).shape == (loss.get_cls_channels(3),)
