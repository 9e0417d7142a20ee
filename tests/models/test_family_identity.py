"""What makes each family itself: SSD's per-image mining, 'all' negatives, normalisation by #pos
(GHM-C: by its N), IoU targets of QFL / VFL, the sampling-free data prior and guided scaling.

Each test fails when one of these rules is bent: mining across the whole batch
instead of per image, ``neg_pos_ratio=None`` / ``'all'`` quietly turning into a
ratio, or the classification loss divided by #pos + 1 or by #anchors instead
of by #pos. References are computed here, from ``F.cross_entropy``, closed-form
focal, SSE, GHM, QFL, VFL and BCE terms, and an IoU assignment done by hand; the
head's ghm / qfl / vfl losses also equal MMDetection's own losses called directly.
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
def make_head(imbalance, prior_prob=0.01):
    train_cfg = ConfigDict(
        assigner=dict(type="MaxIoUAssigner", pos_iou_thr=0.5, neg_iou_thr=0.4, min_pos_iou=0,
                      ignore_iof_thr=-1),
        sampler=dict(type="PseudoSampler"), allowed_border=-1, pos_weight=-1, debug=False)
    test_cfg = ConfigDict(nms_pre=1000, min_bbox_size=0, score_thr=0.0,
                          nms=dict(type="nms", iou_threshold=0.5), max_per_img=100)
    return ImbalanceRetinaHead(num_classes=C, in_channels=1, stacked_convs=1, feat_channels=4,
                               imbalance=imbalance, prior_prob=prior_prob, train_cfg=train_cfg, test_cfg=test_cfg)


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


def ghm_ref(x, labels, w, bins=30):
    # one pass of GHM-C (momentum 0): beta = N / (count in g's bin * non-empty bins), loss = sum(beta BCE) / N
    t = F.one_hot(labels, C + 1)[:, :C].float()
    valid = (w > 0)[:, None].expand_as(x)
    g = (x.sigmoid() - t).abs()
    b = (g * bins).floor().clamp(max=bins - 1).long()
    counts = torch.bincount(b[valid], minlength=bins).float()
    n_valid = float(valid.sum())
    beta = n_valid / (counts[b] * int((counts > 0).sum()))
    bce = F.binary_cross_entropy_with_logits(x, t, reduction="none")
    return (beta * bce * valid).sum() / n_valid


def qfl_ref(x, labels, w, iou, beta=2.0):
    y = F.one_hot(labels, C + 1)[:, :C].float() * torch.where(labels < C, iou, 0.0)[:, None]
    p = x.sigmoid()
    v = (y - p).abs() ** beta * -(y * F.logsigmoid(x) + (1 - y) * F.logsigmoid(-x))
    return (v.sum(1) * w).sum()


def vfl_ref(x, labels, w, iou, gamma=2.0, alpha=0.75):
    q = F.one_hot(labels, C + 1)[:, :C].float() * torch.where(labels < C, iou, 0.0)[:, None]
    p = x.sigmoid()
    pos = -q * (q * F.logsigmoid(x) + (1 - q) * F.logsigmoid(-x))
    neg = -alpha * p ** gamma * F.logsigmoid(-x)
    return (torch.where(q > 0, pos, neg).sum(1) * w).sum()


def bce_ref(x, labels, w):
    t = F.one_hot(labels, C + 1)[:, :C].float()
    return (-(t * F.logsigmoid(x) + (1 - t) * F.logsigmoid(-x)).sum(1) * w).sum()


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
#   ghm: every one of the N = 749 * 2 = 1498 valid entries has g = |0.5 - y| = 0.5, one bin: beta = N / N = 1
#     and BCE ln 2 -> its own normalisation 1/N: 1498 ln 2 / 1498 = ln 2 (by #pos it would be 103.8); with
#     momentum 0.75 the first step's count is the average 0.25 * 1498 started from 0: beta = 4, 4 ln 2
#   ce_prior, scaling off, prior off (logits 0): every entry BCE ln 2 -> 1498 ln 2 / 10 = 103.8334
# (Dividing by P + 1 = 11 or by 774 anchors instead of P = 10 changes every value.)
@pytest.mark.parametrize("imbalance, k, expected", [
    (dict(type="focal", gamma=2.0, alpha=0.25), C, 279.625 * LN2 / 10),
    (dict(type="ohem", neg_pos_ratio=3), C + 1, 4 * math.log(3)),
    (dict(type="ohem", neg_pos_ratio="all"), C + 1, 749 * math.log(3) / 10),
    (dict(type="ohem", neg_pos_ratio=None), C + 1, 749 * math.log(3) / 10),
    (dict(type="sse", lambda_noobj=0.5, obj_target="one"), C + 1, 99.875 / 10),
    (dict(type="ghm", bins=30, momentum=0.75), C, 4 * LN2),
    (dict(type="ghm", bins=7, momentum=0.0), C, LN2),
    (dict(type="ce_prior", scaling="off"), C, 1498 * LN2 / 10),
], ids=["focal", "ohem3", "ohem-all", "ohem-None", "sse-one", "ghm30", "ghm7", "ce_prior-off"])
def test_loss_cls_hand_worked_is_normalised_by_positives(imbalance, k, expected):
    head = make_head(imbalance, prior_prob=None if imbalance["type"] == "ce_prior" else 0.01)
    losses = head.loss_by_feat(to_maps(torch.zeros(1, 774, k)), box_maps(), gts([BOX]), [META])
    assert losses["loss_cls"].item() == pytest.approx(expected, rel=1e-5)


# QFL / VFL with zero logits (σ = 0.5, BCE at logit 0 = ln 2 whatever the target) and zero deltas (a positive's
# IoU target is its anchor's IoU with the box, from the hand assignment):
#   qfl (β 2): each of the 1488 entries with target 0 pays 0.5^2 ln 2; a positive's class entry (IoU - 0.5)^2 ln 2
#   vfl (γ 2, α 0.75): each target-0 entry pays 0.75 * 0.5^2 ln 2; a positive's class entry IoU * ln 2
def test_qfl_vfl_hand_worked_with_iou_targets():
    head = make_head(dict(type="focal"))
    labels, _, iou = assign(head)
    pos_iou = iou[labels < C].double()
    assert len(pos_iou) == 10 and bool(((pos_iou >= 0.5) & (pos_iou < 1)).all())
    expected = {"qfl": (1488 * 0.25 + float(((pos_iou - 0.5) ** 2).sum())) * LN2 / 10,
                "vfl": (1488 * 0.75 * 0.25 + float(pos_iou.sum())) * LN2 / 10}
    for family, value in expected.items():
        losses = make_head(dict(type=family)).loss_by_feat(to_maps(torch.zeros(1, 774, C)), box_maps(), gts([BOX]),
                                                           [META])
        assert losses["loss_cls"].item() == pytest.approx(value, rel=1e-5)


def test_ce_prior_first_batch_starts_from_the_data_optimum():
    # pi = positive (anchor, class) entries / valid entries = 10 / (749 * 2) = 10 / 1498; every class bias
    # becomes log(pi / (1 - pi)) before the loss, so zero-feature logits are that bias:
    # loss = (10 * -ln pi + 1488 * -ln(1 - pi)) / 10 positives (scaling off)
    # The batch's logits were computed with the bias before (prior_prob 0.01: zero features give logit(0.01)).
    pi = 10 / 1498
    head = make_head(dict(type="ce_prior", scaling="off"))
    head.init_weights()
    assert head.data_prior.item() == 0.0
    assert_close(head.retina_cls.bias.detach(), torch.full((9 * C,), math.log(0.01 / 0.99)))
    before = torch.full((1, 774, C), math.log(0.01 / 0.99))
    losses = head.loss_by_feat(to_maps(before), box_maps(), gts([BOX]), [META])
    expected = (10 * -math.log(pi) + 1488 * -math.log(1 - pi)) / 10
    assert losses["loss_cls"].item() == pytest.approx(expected, rel=1e-5)
    assert_close(head.retina_cls.bias.detach(), torch.full((9 * C,), math.log(pi / (1 - pi))))
    assert head.data_prior.item() == pytest.approx(pi) and losses["diag_prior_pi"].item() == pytest.approx(pi)


@pytest.mark.parametrize("imbalance", [
    dict(type="focal", gamma=2.0, alpha=0.25),
    dict(type="ohem", neg_pos_ratio=3),
    dict(type="ohem", neg_pos_ratio="all"),
    dict(type="ohem", neg_pos_ratio=None),
    dict(type="sse", lambda_noobj=0.5, obj_target="iou"),
    dict(type="ghm", bins=30, momentum=0.0),  # ghm_ref is one step without the moving average
    dict(type="qfl", beta=2.0),
    dict(type="vfl", vfl_gamma=2.0, vfl_alpha=0.75),
    dict(type="ce_prior", scaling="off"),
], ids=["focal", "ohem3", "ohem-all", "ohem-None", "sse-iou", "ghm", "qfl", "vfl", "ce_prior-off"])
def test_loss_cls_is_per_anchor_sum_over_positives(imbalance):
    # random logits: loss_cls = (sum of the family's per-anchor loss) / #pos, all computed here
    # (ghm: / its N, the valid entries; ce_prior without the data prior, which shifts the logits)
    family = imbalance["type"]
    head = make_head(imbalance, prior_prob=None if family == "ce_prior" else 0.01)
    labels, w, iou = assign(head)
    num_pos = int((labels < C).sum())
    k = C + 1 if family in ("ohem", "sse") else C
    x = torch.randn(774, k, generator=torch.Generator().manual_seed(0)) * 2
    if family == "focal":
        total = focal_ref(x, labels, w)
    elif family == "ohem":
        total = ohem_ref(x, labels, w, None if imbalance["neg_pos_ratio"] in (None, "all") else 3)
    elif family == "sse":  # zero deltas: the decoded box is the anchor, so the objectness target is its IoU
        total = sse_ref(x, labels, w, iou)
    elif family == "ghm":
        total = ghm_ref(x, labels, w) * num_pos
    elif family == "qfl":
        total = qfl_ref(x, labels, w, iou)
    elif family == "vfl":
        total = vfl_ref(x, labels, w, iou)
    else:
        total = bce_ref(x, labels, w)
    losses = head.loss_by_feat(to_maps(x[None]), box_maps(), gts([BOX]), [META])
    assert_close(losses["loss_cls"], total / num_pos, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("momentum", [0.0, 0.75])
def test_head_ghm_equals_mmdet_ghmc(momentum):
    from mmdet.models.losses import GHMC

    head = make_head(dict(type="ghm", bins=30, momentum=momentum))
    labels, w, iou = assign(head)
    ref = GHMC(bins=30, momentum=momentum, use_sigmoid=True)
    g = torch.Generator().manual_seed(3)
    for _ in range(3):  # the momentum buffers of both move step by step
        x = torch.randn(774, C, generator=g) * 3
        losses = head.loss_by_feat(to_maps(x[None]), box_maps(), gts([BOX]), [META])
        assert_close(losses["loss_cls"], ref(x, labels, w), rtol=1e-5, atol=1e-7)
    if momentum:
        assert_close(head.loss_cls.ghmc.acc_sum, ref.acc_sum)
        assert "loss_cls.ghmc.acc_sum" in head.state_dict()  # a resumed run continues the moving average


def test_head_qfl_vfl_equal_mmdet_losses():
    from mmdet.models.losses import QualityFocalLoss, VarifocalLoss

    x = torch.randn(774, C, generator=torch.Generator().manual_seed(4)) * 2
    head = make_head(dict(type="qfl", beta=1.5))
    labels, w, iou = assign(head)
    num_pos = int((labels < C).sum())
    score = torch.where(labels < C, iou, 0.0)
    losses = head.loss_by_feat(to_maps(x[None]), box_maps(), gts([BOX]), [META])
    expected = QualityFocalLoss(beta=1.5)(x, (labels, score), w, avg_factor=num_pos)
    assert_close(losses["loss_cls"], expected, rtol=1e-5, atol=1e-7)

    head = make_head(dict(type="vfl", vfl_gamma=1.5, vfl_alpha=0.6))
    target = F.one_hot(labels, C + 1)[:, :C].float() * score[:, None]
    losses = head.loss_by_feat(to_maps(x[None]), box_maps(), gts([BOX]), [META])
    expected = VarifocalLoss(alpha=0.6, gamma=1.5, iou_weighted=True)(x, target, w[:, None].expand(-1, C),
                                                                       avg_factor=num_pos)
    assert_close(losses["loss_cls"], expected, rtol=1e-5, atol=1e-7)


def _decode(anchors, deltas):
    """DeltaXYWH decoding written out (RetinaHead's coder: means 0, stds 1)."""
    wh = anchors[:, 2:] - anchors[:, :2]
    ctr = (anchors[:, :2] + anchors[:, 2:]) / 2 + deltas[:, :2] * wh
    size = wh * deltas[:, 2:].exp()
    return torch.cat([ctr - size / 2, ctr + size / 2], dim=1)


@pytest.mark.parametrize("family", ["qfl", "vfl"])
def test_iou_targets_are_the_decoded_boxes_iou_with_their_gt(family):
    from mmdet.structures.bbox import bbox_overlaps

    head = make_head(dict(type=family))
    labels, _, _ = assign(head)
    pos = labels < C
    g = torch.Generator().manual_seed(5)
    deltas = torch.randn(774, 4, generator=g) * 0.2  # predicted boxes off their anchors
    seen = {}
    forward = head.loss_cls.forward

    def spy(*args, **kwargs):
        seen.update(kwargs)
        return forward(*args, **kwargs)

    head.loss_cls.forward = spy
    x = torch.randn(774, C, generator=g)
    losses = head.loss_by_feat(to_maps(x[None]), to_maps(deltas[None]), gts([BOX]), [META])
    anchors = torch.cat(head.prior_generator.grid_priors([(n, n) for n in SIZES], device="cpu"))
    iou = bbox_overlaps(_decode(anchors[pos], deltas[pos]), torch.tensor([BOX]).expand(int(pos.sum()), 4),
                        is_aligned=True)
    assert_close(seen["iou_target"][pos], iou, rtol=1e-5, atol=1e-5)
    assert float(iou.min()) < 0.5 < float(iou.max())  # the targets differ from the anchors' IoU >= 0.5
    # and the loss uses them: the reference with these independent targets
    _, w, _ = assign(head)
    iou_all = torch.zeros(774)
    iou_all[pos] = iou
    ref = (qfl_ref if family == "qfl" else vfl_ref)(x, labels, w, iou_all)
    assert_close(losses["loss_cls"], ref / int(pos.sum()), rtol=1e-5, atol=1e-6)


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
