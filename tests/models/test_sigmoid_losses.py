"""The loss modules of ghm, qfl, vfl and ce_prior on tiny tensors, against values worked out by hand.

Every expected number is written out from the papers' formulas with ``math`` (no call to the code under
test, nor to the MMDetection loss it wraps).
"""

import math

import pytest
import torch
from torch.testing import assert_close

import lossbench.models.registry  # noqa: F401  (registers the losses)
from lossbench.models.losses.modules import (
    ImbalanceGHMCLoss,
    ImbalanceQualityFocalLoss,
    ImbalanceVarifocalLoss,
    SamplingFreeCELoss,
)

LN2, LN3 = math.log(2.0), math.log(3.0)
BCE_POS_075 = -math.log(0.75)  # σ(ln 3) = 0.75 against target 1; also σ(-ln 3) = 0.25 against 0
BCE_NEG_075 = -math.log(0.25)  # σ(ln 3) = 0.75 against target 0


# ----------------------------------------------------------------------------- GHM-C
def _ghm_batch():
    """C = 1. Gradient norms g = |σ(x) - y| and their bins of [0, 1) with M = 2 bins:
    a0 positive, x = ln 3: p = 0.75, g = 0.25 (bin 0), BCE = -ln 0.75
    a1 negative, x = -ln 3: p = 0.25, g = 0.25 (bin 0), BCE = -ln 0.75
    a2 negative, x = -ln 9: p = 0.1, g = 0.1 (bin 0), BCE = -ln 0.9
    a3 negative, x = ln 3: p = 0.75, g = 0.75 (bin 1), BCE = -ln 0.25
    a4 ignored (weight 0), x = 5: no term, counted nowhere."""
    x = torch.tensor([[LN3], [-LN3], [-math.log(9.0)], [LN3], [5.0]])
    labels = torch.tensor([0, 1, 1, 1, 1])
    weights = torch.tensor([1.0, 1.0, 1.0, 1.0, 0.0])
    bce = [-math.log(0.75), -math.log(0.75), -math.log(0.9), -math.log(0.25), 0.0]
    return x, labels, weights, bce


def test_ghm_hand_worked_without_momentum():
    # N = 4 valid entries; bin 0 holds 3, bin 1 holds 1; 2 non-empty bins.
    # beta = N / (count * non-empty bins): bin 0 -> 4 / (3 * 2) = 2/3, bin 1 -> 4 / (1 * 2) = 2
    x, labels, w, bce = _ghm_batch()
    beta = [2 / 3, 2 / 3, 2 / 3, 2.0, 0.0]
    loss = ImbalanceGHMCLoss(bins=2, momentum=0.0)
    per_anchor = loss(x, labels, w, reduction_override="none")
    assert_close(per_anchor, torch.tensor([b * v for b, v in zip(beta, bce)]))
    # the paper's 1/N: (2/3 (2 ln(4/3) + ln(10/9)) + 2 ln 4) / 4 = (0.453773 + 2.772589) / 4 = 0.806590
    expected = (2 / 3 * (2 * math.log(4 / 3) + math.log(10 / 9)) + 2 * math.log(4)) / 4
    assert loss(x, labels, w).item() == pytest.approx(expected, rel=1e-6)
    assert loss.normaliser(7.0, x, w) == 4.0  # N, not the number of positives
    # an all-positive batch in one bin: beta = 1 for every entry, the mean BCE
    ones = torch.zeros(3, 1)
    assert loss(ones, torch.zeros(3, dtype=torch.long)).item() == pytest.approx(LN2, rel=1e-6)


def test_ghm_momentum_averages_the_bin_counts_across_calls():
    # momentum 0.75, buffers start at 0: S = 0.75 S + 0.25 count for non-empty bins
    # step 1: S0 = 0.25 * 3 = 0.75, S1 = 0.25 * 1 = 0.25 -> beta0 = 4 / (0.75 * 2) = 8/3, beta1 = 4 / (0.25 * 2) = 8
    # step 2 (same batch): S0 = 0.5625 + 0.75 = 1.3125, S1 = 0.1875 + 0.25 = 0.4375
    #   -> beta0 = 4 / 2.625 = 1.523810, beta1 = 4 / 0.875 = 4.571429
    x, labels, w, bce = _ghm_batch()
    loss = ImbalanceGHMCLoss(bins=2, momentum=0.75)
    for b0, b1 in ((8 / 3, 8.0), (4 / 2.625, 4 / 0.875)):
        out = loss(x, labels, w, reduction_override="none")
        assert_close(out, torch.tensor([b0 * bce[0], b0 * bce[1], b0 * bce[2], b1 * bce[3], 0.0]))
    assert_close(loss.ghmc.acc_sum, torch.tensor([1.3125, 0.4375]))


def test_ghm_knobs_are_checked():
    for bad in (dict(bins=0), dict(bins=2.5), dict(momentum=1.0)):
        with pytest.raises(ValueError, match="bins|momentum"):
            ImbalanceGHMCLoss(**bad)
    assert ImbalanceGHMCLoss(bins=30.0).bins == 30


# ------------------------------------------------------------------------------ QFL / VFL
# C = 2. Anchor 0: positive of class 1 with IoU 0.6, logits [0, ln 3] (σ = 0.5, 0.75).
#        Anchor 1: negative, logits [-ln 3, 0] (σ = 0.25, 0.5). Anchor 2: ignored (weight 0).
X = torch.tensor([[0.0, LN3], [-LN3, 0.0], [3.0, -3.0]])
LABELS = torch.tensor([1, 2, 2])
W = torch.tensor([1.0, 1.0, 0.0])
BCE_06 = -(0.6 * math.log(0.75) + 0.4 * math.log(0.25))  # BCE(σ = 0.75, y = 0.6) = 0.727127


def test_qfl_hand_worked():
    # QFL = |y - σ|^β BCE(σ, y), y = IoU at the positive's class, 0 elsewhere; β = 2
    # a0: class 1: (0.75 - 0.6)^2 * 0.727127 = 0.016360; class 0: 0.5^2 ln 2 = 0.173287 -> 0.189647
    # a1: class 0: 0.25^2 * -ln 0.75 = 0.017980; class 1: 0.5^2 ln 2 = 0.173287 -> 0.191267
    a0 = 0.15 ** 2 * BCE_06 + 0.25 * LN2
    a1 = 0.0625 * -math.log(0.75) + 0.25 * LN2
    loss = ImbalanceQualityFocalLoss(beta=2.0)
    # the head's iou_target holds 1 outside the positives: it must not reach the target
    for iou in (torch.tensor([0.6, 1.0, 1.0]), torch.tensor([0.6, 0.0, 0.3])):
        out = loss(X, LABELS, W, reduction_override="none", iou_target=iou)
        assert_close(out, torch.tensor([a0, a1, 0.0]))
    assert loss(X, LABELS, W, avg_factor=1, iou_target=torch.tensor([0.6, 1.0, 1.0])).item() == \
        pytest.approx(a0 + a1, rel=1e-6)
    # β = 0: the soft-target BCE summed over classes
    out = ImbalanceQualityFocalLoss(beta=0.0)(X, LABELS, W, reduction_override="none",
                                              iou_target=torch.tensor([0.6, 1.0, 1.0]))
    assert_close(out, torch.tensor([BCE_06 + LN2, -math.log(0.75) + LN2, 0.0]))
    with pytest.raises(ValueError, match="iou_target"):
        loss(X, LABELS, W)


def test_vfl_hand_worked():
    # VFL: q > 0: -q (q log p + (1 - q) log(1 - p)) = q BCE(p, q); q = 0: α p^γ (-log(1 - p)); α 0.75, γ 2
    # a0: class 1 (q = 0.6): 0.6 * 0.727127 = 0.436276; class 0: 0.75 * 0.25 * ln 2 = 0.129965 -> 0.566241
    # a1: class 0: 0.75 * 0.0625 * -ln 0.75 = 0.013485; class 1: 0.129965 -> 0.143450
    a0 = 0.6 * BCE_06 + 0.75 * 0.25 * LN2
    a1 = 0.75 * 0.0625 * -math.log(0.75) + 0.75 * 0.25 * LN2
    loss = ImbalanceVarifocalLoss(vfl_gamma=2.0, vfl_alpha=0.75)
    for iou in (torch.tensor([0.6, 1.0, 1.0]), torch.tensor([0.6, 0.0, 0.3])):
        assert_close(loss(X, LABELS, W, reduction_override="none", iou_target=iou), torch.tensor([a0, a1, 0.0]))
    # γ = 0, α = 1: negatives pay their plain BCE
    out = ImbalanceVarifocalLoss(vfl_gamma=0.0, vfl_alpha=1.0)(X, LABELS, W, reduction_override="none",
                                                                iou_target=torch.tensor([0.6, 1.0, 1.0]))
    assert_close(out, torch.tensor([0.6 * BCE_06 + LN2, -math.log(0.75) + LN2, 0.0]))
    assert loss.gamma == 2.0 and loss.alpha == 0.75


# ------------------------------------------------------------------------------ ce_prior
def test_sampling_free_ce_hand_worked():
    # plain BCE summed over classes: a0: ln 2 (class 0, y 0) + -ln 0.75 (class 1, y 1) = 0.980829;
    # a1: -ln 0.75 (class 0, y 0) + ln 2 (class 1, y 0) = 0.980829; a2 ignored
    loss = SamplingFreeCELoss(scaling="off")
    out = loss(X, LABELS, W, reduction_override="none")
    assert_close(out, torch.tensor([LN2 + BCE_POS_075, BCE_POS_075 + LN2, 0.0]))
    assert loss.rescale(torch.tensor(2.0), torch.tensor(0.5)).item() == 2.0  # off: unchanged
    with pytest.raises(ValueError, match="scaling"):
        SamplingFreeCELoss(scaling="yes")


@pytest.mark.parametrize("loss_weight", [1.0, 2.0])
def test_guided_scaling_carries_no_gradient(loss_weight):
    x = torch.tensor([[0.3, -1.2], [2.0, 0.1], [-0.5, -2.5]], requires_grad=True)
    labels = torch.tensor([0, 2, 1])
    box = torch.tensor(0.37, requires_grad=True)
    loss = SamplingFreeCELoss(scaling="on", loss_weight=loss_weight)
    cls = loss(x, labels, avg_factor=2)
    scale = loss.scale(cls, box)
    assert not scale.requires_grad
    # scale = loss_weight * loss_bbox / loss_cls: the scaled loss equals the (weighted) box loss in value
    assert scale.item() == pytest.approx(loss_weight * 0.37 / cls.item(), rel=1e-6)
    scaled = loss.rescale(cls, box)
    assert scaled.item() == pytest.approx(loss_weight * 0.37, rel=1e-6)
    (g_scaled,) = torch.autograd.grad(scaled, x, retain_graph=True)
    (g_plain,) = torch.autograd.grad(cls, x)
    assert_close(g_scaled, scale * g_plain)  # no term from d(scale)/dx
    # no gradient reaches the box loss through the scale either
    assert torch.autograd.grad(loss.rescale(loss(x, labels, avg_factor=2), box), box, allow_unused=True)[0] is None
    # a zero classification loss (no valid anchor) is scaled by 0, not by inf
    assert loss.rescale(torch.zeros(()), box).item() == 0.0


def test_sampling_free_prior_bias_is_the_logit_of_pi():
    pi = 0.002
    assert_close(SamplingFreeCELoss().prior_bias(3, pi), torch.full((3,), math.log(pi / (1 - pi))))
    assert SamplingFreeCELoss.prior_from_data and not ImbalanceGHMCLoss.prior_from_data


@pytest.mark.parametrize("cls", [ImbalanceGHMCLoss, ImbalanceQualityFocalLoss, ImbalanceVarifocalLoss,
                                 SamplingFreeCELoss])
def test_sigmoid_outputs_and_prior(cls):
    loss = cls()
    assert loss.get_cls_channels(4) == 4
    x = torch.tensor([[0.0, LN3]])
    assert_close(loss.get_activation(x), torch.tensor([[0.5, 0.75]]))
    assert_close(loss.prior_bias(2, 0.01), torch.full((2,), math.log(0.01 / 0.99)))
    # the common controls: identity hooks except where the method says otherwise
    assert loss.rescale(torch.tensor(3.0), torch.tensor(1.0)).item() == (1.0 if cls is SamplingFreeCELoss else 3.0)
    assert loss.normaliser(5.0, torch.zeros(2, 4), torch.ones(2)) == (8.0 if cls is ImbalanceGHMCLoss else 5.0)


def test_iou_targets_read_positives_only():
    from lossbench.models.losses.functional import iou_class_targets, quality_targets

    labels = torch.tensor([1, 2, 0, 2])  # C = 2: anchors 1 and 3 are background
    iou = torch.tensor([0.6, 1.0, 0.8, 0.3])  # the head's 1 (and anything else) outside the positives
    assert_close(quality_targets(labels, iou, 2), torch.tensor([0.6, 0.0, 0.8, 0.0]))
    assert_close(iou_class_targets(labels, iou, 2, torch.float32),
                 torch.tensor([[0.0, 0.6], [0.0, 0.0], [0.8, 0.0], [0.0, 0.0]]))
    with pytest.raises(ValueError, match="iou_target must have shape"):
        quality_targets(labels, None, 2)
