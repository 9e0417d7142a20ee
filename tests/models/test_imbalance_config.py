"""Validation of the `imbalance` setting: every bad value names its key and range."""

import pytest

from lossbench.families import ImbalanceConfigError, loss_cfg, validate_imbalance


@pytest.mark.parametrize("cfg, message", [
    (dict(type="yolo"), r"imbalance.type must be one of \['focal', 'ohem', 'sse'\], got 'yolo'"),
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
    (dict(type="focal", beta=1), r"imbalance.beta is not a knob of family 'focal'"),
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


def test_all_negatives_spellings():
    for v in (None, "all"):
        assert validate_imbalance(dict(type="ohem", neg_pos_ratio=v))["neg_pos_ratio"] is None


def test_loss_cfg_maps_family_to_registered_loss():
    assert loss_cfg(dict(type="sse", lambda_noobj=0.1, obj_target="one")) == \
        dict(type="YOLOSSELoss", lambda_noobj=0.1, obj_target="one")
    assert loss_cfg(dict(type="ohem", neg_pos_ratio="all")) == \
        dict(type="HardNegativeCELoss", neg_pos_ratio=None)
