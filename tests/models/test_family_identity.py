"""What makes each family itself: SSD's per-image mining, 'all' negatives, normalisation by #pos.

Each test fails when one of these rules is bent: mining across the whole batch
instead of per image, ``neg_pos_ratio=None`` / ``'all'`` quietly turning into a
ratio, or the classification loss divided by #pos + 1 or by #anchors instead
of by #pos. References are computed here, from ``F.cross_entropy``, closed-form
focal and SSE terms, and an IoU assignment done by hand.
"""

import math

import pytest
import torch
import torch.nn.functional as F
from mmengine.config import ConfigDict
from mmengine.structures import InstanceData
from torch.testing import assert_close

import lossbench.models.registry  # noqa: F401  (registers the head and losses)
from lossbench.models.heads import ImbalanceRetinaHead
from lossbench.models.losses.modules import HardNegativeCELoss

LN2 = math.log(2.0)
C = 2  # foreground classes of the tiny head; label C = background
IMG, SIZES = 64, (8, 4, 2, 1, 1)  # P3-P7 of a 64 px image: 9 * (64 + 16 + 4 + 1 + 1) = 774 anchors
META = dict(img_shape=(IMG, IMG), pad_shape=(IMG, IMG), scale_factor=(1.0, 1.0), ori_shape=(IMG, IMG))
BOX, LABEL = [10.0, 12.0, 42.0, 40.0], 1


# ------------------------------------------------------------------ the loss module
def _neg(ce):
    # background-last logits [a, 0] of a background anchor: CE = log(1 + e^a) -> a = log(e^ce - 1)
    return [math.log(math.exp(ce) - 1.0), 0.0]


def _two_images():
    """Image 0: one positive (CE ln 2), negatives with CE ln 4, ln 1.5, ln 2.
    Image 1: no positive, negatives with CE ln 8, ln 16, ln 3 -- all harder than image 0's."""
    logits = torch.tensor([
        [[0.0, 0.0], _neg(math.log(4)), _neg(math.log(1.5)), _neg(LN2)],
        [_neg(math.log(8)), _neg(math.log(16)), _neg(math.log(3)), _neg(LN2)],
    ])  # (B = 2, N = 4, C + 1 = 2)
    labels = torch.tensor([[0, 1, 1, 1], [1, 1, 1, 1]])
    return logits, labels


def test_ohem_module_mines_each_image_on_its_own():
    logits, labels = _two_images()
    # ratio 1, image 0: k = 1 * 1 pos = 1 -> keeps ln 4; image 1: k = 1 * 0 pos = 0 -> keeps nothing.
    # sum = ln 2 + ln 4 = ln 8 = 2.0794, / 1 positive = 2.0794.
    # (Mining across the batch would take k = 1 from all 7 negatives: ln 16 of image 1 -> ln 32.)
    loss = HardNegativeCELoss(neg_pos_ratio=1)
    out = loss(logits, labels, reduction_override="none")
    assert_close(out, torch.tensor([[LN2, math.log(4), 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]]))
    assert loss(logits, labels, avg_factor=1).item() == pytest.approx(math.log(8), abs=1e-6)
    # ratio 2, image 0: k = 2 -> ln 4 and ln 2; image 1 still nothing: ln 2 + ln 4 + ln 2 = ln 16
    out = HardNegativeCELoss(neg_pos_ratio=2)(logits, labels, reduction_override="none")
    assert_close(out, torch.tensor([[LN2, math.log(4), 0.0, LN2], [0.0, 0.0, 0.0, 0.0]]))

    # Both images with one positive, ratio 1: each keeps its own hardest negative
    # (ln 4 in image 0, ln 16 in image 1), not the batch's two hardest (ln 16 and ln 8 of image 1).
    labels[1, 3] = 0  # anchor 3 of image 1, logits [ln 1, 0]: CE = ln 2
    out = HardNegativeCELoss(neg_pos_ratio=1)(logits, labels, reduction_override="none")
    assert_close(out, torch.tensor([[LN2, math.log(4), 0.0, 0.0], [0.0, math.log(16), 0.0, LN2]]))


def test_ohem_module_none_keeps_every_negative():
    logits, labels = _two_images()
    # None: every anchor keeps its CE. Image 0: ln 2 + ln 4 + ln 1.5 + ln 2 = ln 24;
    # image 1 (no positive, but None keeps all): ln 8 + ln 16 + ln 3 + ln 2 = ln 768.
    # sum = ln 18432 = 9.8217, / 1 positive. (A ratio of 3 would give ln 24 = 3.1781.)
    loss = HardNegativeCELoss(neg_pos_ratio=None)
    assert loss(logits, labels, avg_factor=1).item() == pytest.approx(math.log(18432), abs=1e-5)

    # against plain softmax CE, one image (N, C + 1) and a batch (B, N, C + 1), with ignored anchors
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 300, C + 1, generator=g) * 2
    y = torch.full((2, 300), C)
    y[:, :4] = torch.randint(0, C, (2, 4), generator=g)  # 4 positives per image, 296 negatives
    w = (torch.rand(2, 300, generator=g) > 0.1).float()  # ~10% ignored
    ref = F.cross_entropy(x.flatten(0, 1), y.flatten(), reduction="none").reshape(2, 300) * w
    num_pos = float(((y < C) & (w > 0)).sum())
    assert_close(loss(x, y, w, reduction_override="none"), ref)
    assert_close(loss(x, y, w, avg_factor=num_pos), ref.sum() / num_pos)
    assert_close(loss(x[0], y[0], w[0], reduction_override="none"), ref[0])


# ------------------------------------------------------------------------- the head
def make_head(imbalance):
    train_cfg = ConfigDict(
        assigner=dict(type="MaxIoUAssigner", pos_iou_thr=0.5, neg_iou_thr=0.4, min_pos_iou=0,
                      ignore_iof_thr=-1),
        sampler=dict(type="PseudoSampler"), allowed_border=-1, pos_weight=-1, debug=False)
    test_cfg = ConfigDict(nms_pre=1000, min_bbox_size=0, score_thr=0.0,
                          nms=dict(type="nms", iou_threshold=0.5), max_per_img=100)
    return ImbalanceRetinaHead(num_classes=C, in_channels=1, stacked_convs=1, feat_channels=4,
                               imbalance=imbalance, train_cfg=train_cfg, test_cfg=test_cfg)


def to_maps(per_anchor):
    """Per-anchor outputs ``(B, 774, K)`` -> maps ``(B, 9*K, n, n)``; anchor (y, x, a), channel a*K + k."""
    b, _, k = per_anchor.shape
    maps, start = [], 0
    for n in SIZES:
        maps.append(per_anchor[:, start:start + n * n * 9].reshape(b, n, n, 9 * k).permute(0, 3, 1, 2))
        start += n * n * 9
    return maps


def box_maps(b=1):
    return [torch.zeros(b, 36, n, n) for n in SIZES]  # zero deltas: predicted boxes = anchors


def gts(*boxes):
    return [InstanceData(bboxes=torch.tensor(bx, dtype=torch.float32).reshape(-1, 4),
                         labels=torch.tensor([LABEL] * len(bx), dtype=torch.long)) for bx in boxes]


def assign(head):
    """Labels, weights and IoU of every anchor against BOX, by hand (MaxIoUAssigner 0.5 / 0.4)."""
    anchors = torch.cat(head.prior_generator.grid_priors([(n, n) for n in SIZES], device="cpu"))
    lt = torch.maximum(anchors[:, :2], torch.tensor(BOX[:2]))
    rb = torch.minimum(anchors[:, 2:], torch.tensor(BOX[2:]))
    inter = (rb - lt).clamp(min=0).prod(1)
    area = (anchors[:, 2:] - anchors[:, :2]).prod(1)
    iou = inter / (area + (BOX[2] - BOX[0]) * (BOX[3] - BOX[1]) - inter)  # (774,)
    assert iou.max() >= 0.5  # so the low-quality match (min_pos_iou) adds no positive
    labels = torch.where(iou >= 0.5, LABEL, C)
    weights = ((iou >= 0.5) | (iou < 0.4)).float()  # 0.4 <= IoU < 0.5 is ignored
    return labels, weights, iou


def focal_ref(x, labels, w, gamma=2.0, alpha=0.25):
    # -alpha (1 - p)^g log p on the target class, -(1 - alpha) p^g log(1 - p) on the others
    t = F.one_hot(labels, C + 1)[:, :C].float()
    p = x.sigmoid()
    pos = -alpha * (1 - p) ** gamma * F.logsigmoid(x)
    neg = -(1 - alpha) * p ** gamma * F.logsigmoid(-x)
    return ((t * pos + (1 - t) * neg).sum(1) * w).sum()


def ohem_ref(x, labels, w, ratio):
    ce = F.cross_entropy(x, labels, reduction="none")
    pos, neg = (labels < C) & (w > 0), (labels == C) & (w > 0)
    if ratio is None:
        return ce[pos | neg].sum()
    return ce[pos].sum() + ce[neg].sort(descending=True).values[:int(ratio * pos.sum())].sum()


def sse_ref(x, labels, w, iou, lambda_noobj=0.5):
    t = F.one_hot(labels, C + 1)[:, :C].float()
    conf, p = x[:, -1].sigmoid(), x[:, :-1].sigmoid()
    v = torch.where(labels < C, (conf - iou) ** 2 + ((p - t) ** 2).sum(1), lambda_noobj * conf ** 2)
    return (v * w).sum()


def test_hand_assignment_matches_the_heads_targets():
    # the by-hand assignment the tests below rely on is the one the head trains with
    head = make_head(dict(type="focal"))
    labels, weights, _ = assign(head)
    anchors, valid = head.get_anchors([(n, n) for n in SIZES], [META], device="cpu")
    t_labels, t_weights, *_, avg_factor = head.get_targets(anchors, valid, gts([BOX]), [META])
    assert torch.equal(torch.cat(t_labels, 1)[0], labels)
    assert torch.equal(torch.cat(t_weights, 1)[0], weights)
    # box [10, 12, 42, 40] on 64 px: 10 anchors with IoU >= 0.5, 739 below 0.4, 25 ignored
    assert (int((labels < C).sum()), int(((labels == C) & (weights > 0)).sum())) == (10, 739)
    assert avg_factor == 10


# P = 10 positives, N = 739 negatives (25 ignored); every logit 0.
#   focal (gamma 2, alpha 0.25), p = 0.5: a positive pays 0.25 * 0.25 ln 2 (its class)
#     + 0.75 * 0.25 ln 2 (the other) = 0.25 ln 2; a negative 2 * 0.75 * 0.25 ln 2 = 0.375 ln 2
#     -> (10 * 0.25 + 739 * 0.375) ln 2 / 10 = 279.625 * 0.693147 / 10 = 19.3821
#   ohem ratio 3, every CE = ln 3: 10 positives + k = 30 negatives -> 40 ln 3 / 10 = 4 ln 3 = 4.3944
#   ohem 'all' / None: (10 + 739) ln 3 / 10 = 749 * 1.098612 / 10 = 82.2861
#   sse (lambda 0.5, target 1), conf = p = 0.5: a positive pays (0.5 - 1)^2 + 0.5^2 + 0.5^2 = 0.75,
#     a negative 0.5 * 0.5^2 = 0.125 -> (10 * 0.75 + 739 * 0.125) / 10 = 99.875 / 10 = 9.9875
# (Dividing by P + 1 = 11 or by 774 anchors instead of P = 10 changes every value.)
@pytest.mark.parametrize("imbalance, k, expected", [
    (dict(type="focal", gamma=2.0, alpha=0.25), C, 279.625 * LN2 / 10),
    (dict(type="ohem", neg_pos_ratio=3), C + 1, 4 * math.log(3)),
    (dict(type="ohem", neg_pos_ratio="all"), C + 1, 749 * math.log(3) / 10),
    (dict(type="ohem", neg_pos_ratio=None), C + 1, 749 * math.log(3) / 10),
    (dict(type="sse", lambda_noobj=0.5, obj_target="one"), C + 1, 99.875 / 10),
], ids=["focal", "ohem3", "ohem-all", "ohem-None", "sse-one"])
def test_loss_cls_hand_worked_is_normalised_by_positives(imbalance, k, expected):
    head = make_head(imbalance)
    losses = head.loss_by_feat(to_maps(torch.zeros(1, 774, k)), box_maps(), gts([BOX]), [META])
    assert losses["loss_cls"].item() == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("imbalance", [
    dict(type="focal", gamma=2.0, alpha=0.25),
    dict(type="ohem", neg_pos_ratio=3),
    dict(type="ohem", neg_pos_ratio="all"),
    dict(type="ohem", neg_pos_ratio=None),
    dict(type="sse", lambda_noobj=0.5, obj_target="iou"),
], ids=["focal", "ohem3", "ohem-all", "ohem-None", "sse-iou"])
def test_loss_cls_is_per_anchor_sum_over_positives(imbalance):
    # random logits: loss_cls = (sum of the family's per-anchor loss) / #pos, all computed here
    head = make_head(imbalance)
    labels, w, iou = assign(head)
    num_pos = int((labels < C).sum())
    k = C if imbalance["type"] == "focal" else C + 1
    x = torch.randn(774, k, generator=torch.Generator().manual_seed(0)) * 2
    if imbalance["type"] == "focal":
        total = focal_ref(x, labels, w)
    elif imbalance["type"] == "ohem":
        total = ohem_ref(x, labels, w, None if imbalance["neg_pos_ratio"] in (None, "all") else 3)
    else:  # zero deltas: the decoded box is the anchor, so the objectness target is its IoU
        total = sse_ref(x, labels, w, iou)
    losses = head.loss_by_feat(to_maps(x[None]), box_maps(), gts([BOX]), [META])
    assert_close(losses["loss_cls"], total / num_pos, rtol=1e-5, atol=1e-6)


def test_head_mines_each_image_on_its_own():
    # Image 0 holds the box, image 1 none; image 1's background logit is 3 lower, so its negatives
    # are the batch's hardest. SSD's rule: image 0 keeps its 10 positives and its own top 3 * 10 = 30
    # negatives; image 1 (k = 3 * 0) keeps nothing. Mining across the batch would take image 1's.
    head = make_head(dict(type="ohem", neg_pos_ratio=3))
    labels, w, _ = assign(head)
    x = torch.randn(2, 774, C + 1, generator=torch.Generator().manual_seed(1))
    x[1, :, C] -= 3.0
    anchors, valid = head.get_anchors([(n, n) for n in SIZES], [META, META], device="cpu")
    avg_factor = head.get_targets(anchors, valid, gts([BOX], []), [META, META])[-1]
    # MMDetection's avg_factor counts max(#pos, 1) per image: 10 + 1
    assert avg_factor == 11
    expected = ohem_ref(x[0], labels, w, 3) / avg_factor
    losses = head.loss_by_feat(to_maps(x), box_maps(2), gts([BOX], []), [META, META])
    assert_close(losses["loss_cls"], expected, rtol=1e-5, atol=1e-6)
    # the positives' share of the loss is that of image 0 alone
    ce0 = F.cross_entropy(x[0], labels, reduction="none")
    assert_close(losses["diag_share_pos"], ce0[labels < C].sum() / (expected * avg_factor))


def test_module_spelled_all_keeps_every_negative():
    """`HardNegativeCELoss(neg_pos_ratio='all')` (as a config may write it) is plain CE."""
    m = HardNegativeCELoss(neg_pos_ratio="all")
    x, y = torch.zeros(3, 2), torch.tensor([0, 1, 1])
    assert_close(m(x, y, reduction_override="none"), F.cross_entropy(x, y, reduction="none"))
    with pytest.raises(ValueError, match="neg_pos_ratio must be"):
        HardNegativeCELoss(neg_pos_ratio="most")
