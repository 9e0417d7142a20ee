"""The common head: targets, losses, prior init and test-time scores per family."""

import math

import pytest
import torch
from mmengine.config import ConfigDict
from mmengine.structures import InstanceData
from torch.testing import assert_close

import lossbench.models.registry  # noqa: F401  (registers the head and losses)
from lossbench.families import FAMILY_ORDER, ImbalanceConfigError
from lossbench.models.heads import ImbalanceRetinaHead

FAMILIES = {
    "focal": dict(type="focal", gamma=2.0, alpha=0.25),
    "ohem": dict(type="ohem", neg_pos_ratio=3),
    "sse": dict(type="sse", lambda_noobj=0.5, obj_target="iou"),
    "ghm": dict(type="ghm", bins=30, momentum=0.75),
    "qfl": dict(type="qfl", beta=2.0),
    "vfl": dict(type="vfl", vfl_gamma=2.0, vfl_alpha=0.75),
    "ce_prior": dict(type="ce_prior", scaling="on"),
}
SIGMOID = ("focal", "ghm", "qfl", "vfl", "ce_prior")  # C sigmoid logits per anchor


def test_every_family_of_the_table_is_tested():
    assert tuple(FAMILIES) == FAMILY_ORDER
IMG = 64
META = [dict(img_shape=(IMG, IMG), pad_shape=(IMG, IMG), scale_factor=(1.0, 1.0), ori_shape=(IMG, IMG))]


def make_head(imbalance, num_classes=2, prior_prob=0.01, cls_weight=1.0):
    train_cfg = ConfigDict(
        assigner=dict(type="MaxIoUAssigner", pos_iou_thr=0.5, neg_iou_thr=0.4, min_pos_iou=0,
                      ignore_iof_thr=-1),
        sampler=dict(type="PseudoSampler"), allowed_border=-1, pos_weight=-1, debug=False)
    test_cfg = ConfigDict(nms_pre=1000, min_bbox_size=0, score_thr=0.0,
                          nms=dict(type="nms", iou_threshold=0.5), max_per_img=100)
    head = ImbalanceRetinaHead(num_classes=num_classes, in_channels=1, stacked_convs=1,
                               feat_channels=4, imbalance=imbalance, prior_prob=prior_prob,
                               cls_weight=cls_weight, train_cfg=train_cfg, test_cfg=test_cfg)
    head.init_weights()
    return head


def feats():
    torch.manual_seed(0)
    # P3-P7 of a 64 px image: 8, 4, 2, 1, 1 (the last extra level rounds up)
    return [torch.rand(1, 1, n, n) for n in (8, 4, 2, 1, 1)]


def gt(boxes, labels):
    return [InstanceData(bboxes=torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
                         labels=torch.tensor(labels, dtype=torch.long))]


@pytest.mark.parametrize("family", FAMILIES)
def test_no_ground_truth_has_no_positive_terms(family):
    head = make_head(FAMILIES[family])
    cls_scores, bbox_preds = head.forward(feats())
    losses = head.loss_by_feat(cls_scores, bbox_preds, gt([], []), META)
    assert losses["loss_bbox"].item() == 0.0
    assert losses["diag_pos_per_img"].item() == 0.0
    assert losses["diag_share_pos"].item() == 0.0
    # anchors of a 64 px image: 9 * (8^2 + 4^2 + 2^2 + 1 + 1) = 774
    assert losses["diag_anchors_per_img"].item() == 774
    if family == "ohem":  # SSD: no positives -> no negatives kept
        assert losses["loss_cls"].item() == 0.0
    elif family == "ce_prior":  # guided scaling to a box loss of 0
        assert losses["loss_cls"].item() == 0.0 and losses["diag_share_easy_neg"].item() > 0
    else:  # every anchor is a negative and still pays its background term
        assert losses["loss_cls"].item() > 0.0


@pytest.mark.parametrize("family", FAMILIES)
def test_one_box_gives_positive_losses_and_gradients(family):
    head = make_head(FAMILIES[family])
    cls_scores, bbox_preds = head.forward(feats())
    losses = head.loss_by_feat(cls_scores, bbox_preds, gt([[10, 12, 42, 40]], [1]), META)
    assert losses["loss_cls"].item() > 0 and losses["loss_bbox"].item() > 0
    assert losses["diag_pos_per_img"].item() >= 1
    shares = [losses[f"diag_share_{k}"].item() for k in ("pos", "hard_neg", "easy_neg")]
    assert sum(shares) == pytest.approx(1.0, abs=1e-5) and shares[0] > 0
    (losses["loss_cls"] + losses["loss_bbox"]).backward()
    assert head.retina_cls.weight.grad.abs().sum() > 0
    assert all(torch.isfinite(p.grad).all() for p in head.parameters() if p.grad is not None)


@pytest.mark.parametrize("family, channels", [("focal", 2), ("ohem", 3), ("sse", 3), ("ghm", 2), ("qfl", 2),
                                              ("vfl", 2), ("ce_prior", 2)])
def test_prior_init_starts_at_pi(family, channels):
    head = make_head(FAMILIES[family])
    assert head.retina_cls.out_channels == 9 * channels
    logits = head.retina_cls.bias.detach().reshape(9, channels)  # what a zero feature map outputs
    if family == "ohem":
        assert_close(logits.softmax(-1)[:, -1], torch.full((9,), 0.99))
        assert_close(logits.softmax(-1)[:, :-1], torch.full((9, 2), 0.005))
    elif family in SIGMOID:  # ce_prior: until its first batch sets the data's optimum
        assert_close(logits.sigmoid(), torch.full((9, channels), 0.01))
    else:  # sse: objectness at pi; class logits, which see positives only, at 0
        assert_close(logits[:, -1].sigmoid(), torch.full((9,), 0.01))
        assert_close(logits[:, :-1], torch.zeros(9, channels - 1))


@pytest.mark.parametrize("family", FAMILIES)
def test_prior_off_starts_every_bias_at_zero(family):
    head = make_head(FAMILIES[family], prior_prob=None)
    assert head.prior_prob is None
    assert_close(head.retina_cls.bias.detach(), torch.zeros_like(head.retina_cls.bias))
    head.loss_by_feat(*head.forward(feats()), gt([[10, 12, 42, 40]], [1]), META)
    assert_close(head.retina_cls.bias.detach(), torch.zeros_like(head.retina_cls.bias))  # ce_prior: nothing measured
    with pytest.raises(ValueError, match="prior_prob"):
        make_head(FAMILIES[family], prior_prob=1.5)


def _const_maps(head, logits):
    """cls maps whose every anchor outputs `logits` (K,), and zero box deltas."""
    k = len(logits)
    cls = [torch.tensor(logits).repeat(9)[None, :, None, None].expand(1, 9 * k, n, n).contiguous()
           for n in (8, 4, 2, 1, 1)]
    box = [torch.zeros(1, 36, n, n) for n in (8, 4, 2, 1, 1)]
    return cls, box


@pytest.mark.parametrize("family, logits, expected", [
    # sigma(0.5) = 0.622459, sigma(-1) = 0.268941
    ("focal", [0.5, -1.0], [1 / (1 + math.exp(-0.5)), 1 / (1 + math.exp(1.0))]),
    # softmax([1, 0, 2]) = [e, 1, e^2] / (e + 1 + e^2) = [0.244728, 0.090031] without background
    ("ohem", [1.0, 0.0, 2.0], [math.e / (math.e + 1 + math.e ** 2), 1 / (math.e + 1 + math.e ** 2)]),
    # sigma(o = 0) * sigma(c): 0.5 * 0.731059 = 0.365529, 0.5 * 0.5 = 0.25
    ("sse", [1.0, 0.0, 0.0], [0.5 / (1 + math.exp(-1.0)), 0.25]),
    *[(f, [0.5, -1.0], [1 / (1 + math.exp(-0.5)), 1 / (1 + math.exp(1.0))]) for f in ("ghm", "qfl", "vfl", "ce_prior")],
])
def test_predict_scores_follow_the_family(family, logits, expected):
    head = make_head(FAMILIES[family])
    cls, box = _const_maps(head, logits)
    res = head.predict_by_feat(cls, box, batch_img_metas=META, rescale=False)[0]
    assert len(res.bboxes) > 0 and res.bboxes.shape[1] == 4
    for c, score in enumerate(expected):
        got = res.scores[res.labels == c]
        assert len(got) > 0
        assert got.max().item() == pytest.approx(score, abs=1e-5)
    # zero deltas: the boxes are the anchors themselves, inside a sane range
    assert res.bboxes.min() > -200 and res.bboxes.max() < 300


def test_sse_objectness_target_switch_changes_the_loss():
    torch.manual_seed(1)
    f = feats()
    losses = {}
    for target in ("iou", "one"):
        torch.manual_seed(1)
        head = make_head(dict(type="sse", lambda_noobj=0.5, obj_target=target))
        cls_scores, bbox_preds = head.forward(f)
        losses[target] = head.loss_by_feat(cls_scores, bbox_preds, gt([[10, 12, 42, 40]], [0]), META)
    # same weights, same negatives: only the positives' objectness target differs
    assert losses["iou"]["loss_cls"].item() != pytest.approx(losses["one"]["loss_cls"].item())
    assert losses["iou"]["loss_bbox"].item() == pytest.approx(losses["one"]["loss_bbox"].item())


@pytest.mark.parametrize("family", FAMILIES)
def test_cls_weight_multiplies_the_classification_loss(family):
    # the same weights and features: loss_cls doubles (ce_prior's guided scale: 2 x the box loss),
    # the box loss and the diagnostics' shares do not change
    losses = {}
    for w in (1.0, 2.0):
        torch.manual_seed(0)
        head = make_head(FAMILIES[family], cls_weight=w)
        assert head.loss_cls.loss_weight == w and head.cls_weight == w
        losses[w] = head.loss_by_feat(*head.forward(feats()), gt([[10, 12, 42, 40]], [1]), META)
    assert losses[2.0]["loss_cls"].item() == pytest.approx(2 * losses[1.0]["loss_cls"].item(), rel=1e-5)
    assert losses[2.0]["loss_bbox"].item() == pytest.approx(losses[1.0]["loss_bbox"].item())
    for k in ("diag_share_pos", "diag_share_hard_neg", "diag_share_easy_neg"):
        assert losses[2.0][k].item() == pytest.approx(losses[1.0][k].item(), rel=1e-5, abs=1e-7)
    if family == "ce_prior":
        assert losses[2.0]["loss_cls"].item() == pytest.approx(2 * losses[2.0]["loss_bbox"].item(), rel=1e-5)


def test_ce_prior_measures_once_and_a_resume_keeps_the_trained_bias():
    box = gt([[10, 12, 42, 40]], [1])
    head = make_head(FAMILIES["ce_prior"])
    cls_scores, bbox_preds = head.forward(feats())
    first = head.loss_by_feat(cls_scores, bbox_preds, box, META)
    pi = head.data_prior.item()
    assert 0 < pi < 0.5 and first["diag_prior_pi"].item() == pytest.approx(pi)
    measured = head.retina_cls.bias.detach().clone()
    assert_close(measured, torch.full_like(measured, math.log(pi / (1 - pi))))
    # the first batch's loss is the one a forward with the new bias gives: computed again, nothing moves
    again = head.loss_by_feat(*head.forward(feats()), box, META)
    assert again["loss_cls"].item() == pytest.approx(first["loss_cls"].item(), rel=1e-6)
    # the shifted logits train: backward through the first batch after the in-place bias change
    (first["loss_cls"] + first["loss_bbox"]).backward()
    assert torch.isfinite(head.retina_cls.bias.grad).all() and head.retina_cls.bias.grad.abs().sum() > 0
    # other batches (here: no objects) never measure again
    with torch.no_grad():
        head.retina_cls.bias.add_(0.5)  # as if trained
    trained = head.retina_cls.bias.detach().clone()
    head.loss_by_feat(*head.forward(feats()), gt([], []), META)
    assert_close(head.retina_cls.bias.detach(), trained)
    # a resumed run (init_weights, then the checkpoint) keeps its trained bias and its pi
    resumed = make_head(FAMILIES["ce_prior"])
    resumed.load_state_dict(head.state_dict())
    resumed.loss_by_feat(*resumed.forward(feats()), box, META)
    assert_close(resumed.retina_cls.bias.detach(), trained)
    assert resumed.data_prior.item() == pytest.approx(pi)
    # init_weights starts over: the next batch measures again
    resumed.init_weights()
    assert resumed.data_prior.item() == 0.0
    resumed.loss_by_feat(*resumed.forward(feats()), box, META)
    assert_close(resumed.retina_cls.bias.detach(), measured)


def test_only_ce_prior_adds_state():
    # the other families' checkpoints keep their keys (a run resumes across this change)
    keys = {f: set(make_head(FAMILIES[f]).state_dict()) for f in ("focal", "qfl", "vfl", "ce_prior")}
    assert keys["qfl"] == keys["vfl"] == keys["focal"]
    assert keys["ce_prior"] - keys["focal"] == {"data_prior"}


def test_bad_imbalance_stops_at_build_time():
    with pytest.raises(ImbalanceConfigError, match="imbalance.gamma must be >= 0"):
        make_head(dict(type="focal", gamma=-1.0))
    with pytest.raises(ValueError, match="builds loss_cls from `imbalance`"):
        ImbalanceRetinaHead(2, 1, loss_cls=dict(type="FocalLoss"))
    for bad in (0, -1.0, float("inf"), "2", True):
        with pytest.raises(ValueError, match="model.bbox_head.cls_weight must be a finite number > 0"):
            make_head(FAMILIES["focal"], cls_weight=bad)
