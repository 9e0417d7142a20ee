"""The pure loss functions: hand-worked values, independent references, properties."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch.testing import assert_close

from lossbench.models.losses.functional import focal_loss, hard_negative_ce, sse_loss

LN2, LN3 = math.log(2.0), math.log(3.0)


# ----------------------------------------------------------------------------- focal
def test_focal_hand_worked():
    # C = 1. Anchor 0 positive, x = 0: p_t = 0.5, (1 - p_t)^2 = 0.25, -log 0.5 = 0.693147,
    #   alpha_t = 0.25  -> 0.25 * 0.25 * 0.693147 = 0.0433217
    # Anchor 1 background, x = 0: p_t = 0.5, alpha_t = 0.75 -> 0.75 * 0.25 * 0.693147 = 0.1299651
    # Anchor 2 positive, x = ln 3: p = 0.75, (0.25)^2 = 0.0625, -log 0.75 = 0.2876821
    #   -> 0.25 * 0.0625 * 0.2876821 = 0.0044950
    logits = torch.tensor([[0.0], [0.0], [LN3]])
    labels = torch.tensor([0, 1, 0])
    out = focal_loss(logits, labels, gamma=2.0, alpha=0.25)
    assert_close(out, torch.tensor([0.0433217, 0.1299651, 0.0044950]), atol=1e-6, rtol=0)


def test_focal_sums_over_classes_and_applies_weights():
    # C = 2, label 0, x = [0, 0], gamma = 0, alpha = 0.5:
    # class 0 (target 1): 0.5 * ln 2; class 1 (target 0): 0.5 * ln 2 -> ln 2 in all; weight 3 -> 3 ln 2
    out = focal_loss(torch.zeros(1, 2), torch.tensor([0]), 0.0, 0.5, weights=torch.tensor([3.0]))
    assert_close(out, torch.tensor([3 * LN2]))


def test_focal_matches_mmdet_focal_loss():
    from mmdet.models.losses import FocalLoss

    g = torch.Generator().manual_seed(0)
    logits = torch.randn(64, 5, generator=g) * 3
    labels = torch.randint(0, 6, (64,), generator=g)
    weights = torch.rand(64, generator=g)
    for gamma, alpha in [(0.0, 0.75), (0.5, 0.5), (2.0, 0.25), (5.0, 0.25)]:
        ref = FocalLoss(use_sigmoid=True, gamma=gamma, alpha=alpha, reduction="none")(
            logits, labels, weight=weights[:, None].expand(-1, 5))  # (N, C)
        assert_close(focal_loss(logits, labels, gamma, alpha, weights), ref.sum(1))


def test_focal_gamma0_is_alpha_balanced_bce():
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(50, 4, generator=g) * 4
    labels = torch.randint(0, 5, (50,), generator=g)
    t = F.one_hot(labels, 5)[:, :4].float()
    alpha = 0.3
    bce = F.binary_cross_entropy_with_logits(logits, t, reduction="none")
    ref = (bce * (alpha * t + (1 - alpha) * (1 - t))).sum(1)
    assert_close(focal_loss(logits, labels, 0.0, alpha), ref)


def test_focal_down_weights_easy_examples_more_with_larger_gamma():
    # an easy background anchor (p = sigmoid(-4)): FL shrinks monotonically with gamma
    vals = [focal_loss(torch.tensor([[-4.0]]), torch.tensor([1]), g, 0.25).item()
            for g in (0.0, 0.5, 1.0, 2.0, 5.0)]
    assert all(a > b for a, b in zip(vals, vals[1:]))


# ------------------------------------------------------------------------------ ohem
def _neg_logits(ces):
    # background-last logits [a, 0] on a background anchor: CE = log(1 + e^a); a = log(e^ce - 1)
    return [[math.log(math.exp(c) - 1.0), 0.0] for c in ces]


def test_hard_negative_ce_hand_worked():
    # 1 positive with logits [0, 0]: CE = ln 2. Negatives with CE ln 2, ln 4, ln 8, ln 3/2.
    # ratio 2 -> k = 2: keep ln 8 and ln 4. Total = ln 2 + ln 8 + ln 4 = ln 64 = 4.158883
    logits = torch.tensor([[0.0, 0.0]] + _neg_logits([LN2, math.log(4), math.log(8), math.log(1.5)]))
    labels = torch.tensor([0, 1, 1, 1, 1])
    out = hard_negative_ce(logits, labels, neg_pos_ratio=2)
    assert_close(out, torch.tensor([LN2, 0.0, math.log(4), math.log(8), 0.0]))
    assert out.sum().item() == pytest.approx(math.log(64), abs=1e-5)
    # ratio 1.5 -> k = floor(1.5) = 1: only ln 8 survives among the negatives
    out = hard_negative_ce(logits, labels, neg_pos_ratio=1.5)
    assert_close(out, torch.tensor([LN2, 0.0, 0.0, math.log(8), 0.0]))


def _brute_force_mining(logits, labels, ratio, weights):
    """Reference: full sort of all negatives by CE (Python's sorted), keep the top k."""
    c = logits.shape[1] - 1
    ce = F.cross_entropy(logits, labels, reduction="none").tolist()
    w = weights.tolist()
    pos = [i for i in range(len(ce)) if labels[i] < c and w[i] > 0]
    neg = [i for i in range(len(ce)) if labels[i] == c and w[i] > 0]
    ranked = sorted(neg, key=lambda i: -ce[i])
    k = min(int(ratio * len(pos)), len(neg))
    total = sum(ce[i] * w[i] for i in pos) + sum(ce[i] * w[i] for i in ranked[:k])
    return total, k, sorted(ce[i] for i in ranked[:k])


@pytest.mark.parametrize("ratio", [1, 2, 3, 3.5, 10, 1000])
def test_hard_negative_ce_matches_full_sort(ratio):
    g = torch.Generator().manual_seed(2)
    n, c = 300, 4
    logits = torch.randn(n, c + 1, generator=g) * 2
    # many exact ties: a block of negatives with identical logits
    logits[100:160] = torch.tensor([0.3, -0.2, 0.1, 0.0, -1.0])
    labels = torch.full((n,), c)
    labels[torch.randperm(n, generator=g)[:7]] = torch.randint(0, c, (7,), generator=g)
    weights = (torch.rand(n, generator=g) > 0.1).float()  # ~10% ignored
    out = hard_negative_ce(logits, labels, ratio, weights)
    total, k, kept = _brute_force_mining(logits, labels, ratio, weights)
    assert out.sum().item() == pytest.approx(total, rel=1e-5)
    neg_kept = out[(labels == c) & (out > 0)]
    assert len(neg_kept) == k
    assert_close(neg_kept.sort().values, torch.tensor(kept))


def test_hard_negative_ce_ignored_anchor_is_never_mined():
    # the hardest negative has weight 0: mining must take the next one
    logits = torch.tensor([[0.0, 0.0]] + _neg_logits([5.0, 1.0, 0.5]))
    labels = torch.tensor([0, 1, 1, 1])
    out = hard_negative_ce(logits, labels, 1, weights=torch.tensor([1.0, 0.0, 1.0, 1.0]))
    assert_close(out, torch.tensor([LN2, 0.0, 1.0, 0.0]))


def test_hard_negative_ce_none_is_plain_ce():
    g = torch.Generator().manual_seed(3)
    logits = torch.randn(80, 6, generator=g)
    labels = torch.randint(0, 6, (80,), generator=g)
    weights = torch.rand(80, generator=g)
    ref = F.cross_entropy(logits, labels, reduction="none") * weights
    assert_close(hard_negative_ce(logits, labels, None, weights), ref)


def test_hard_negative_ce_without_positives_keeps_no_negatives():
    # SSD's rule: k = ratio * #pos = 0
    logits = torch.tensor(_neg_logits([3.0, 2.0]))
    out = hard_negative_ce(logits, torch.tensor([1, 1]), 3)
    assert out.abs().sum().item() == 0.0
    assert hard_negative_ce(logits, torch.tensor([1, 1]), None).sum().item() == pytest.approx(5.0)


def test_hard_negative_ce_is_one_image_and_refuses_a_batch():
    # Image 0: 1 positive (CE ln 2), negatives ln 4, ln 3/2. Image 1: no positive, negatives ln 8, ln 16.
    # Ratio 1, per image: image 0 keeps ln 4 (total ln 8); image 1 keeps nothing (k = 1 * 0).
    # Flattened into one "image" the hardest negative would be ln 16 of image 1 instead.
    img0 = torch.tensor([[0.0, 0.0]] + _neg_logits([math.log(4), math.log(1.5)]))
    img1 = torch.tensor(_neg_logits([math.log(8), math.log(16), LN2]))
    assert_close(hard_negative_ce(img0, torch.tensor([0, 1, 1]), 1),
                 torch.tensor([LN2, math.log(4), 0.0]))
    assert_close(hard_negative_ce(img1, torch.tensor([1, 1, 1]), 1), torch.zeros(3))
    # a (B, N, C + 1) batch must not be mined as one pool: the function refuses it
    batch = torch.stack([img0, img1])  # (2, 3, 2)
    with pytest.raises(ValueError, match=r"logits must be \(N, C \+ 1\)"):
        hard_negative_ce(batch, torch.tensor([[0, 1, 1], [1, 1, 1]]), 1)


def test_hard_negative_ce_rejects_bad_ratio():
    with pytest.raises(ValueError, match="neg_pos_ratio must be > 0"):
        hard_negative_ce(torch.zeros(2, 2), torch.tensor([0, 1]), 0)


# ------------------------------------------------------------------------------- sse
def test_sse_hand_worked():
    # C = 2. Positive, label 0, o = 0 (C^ = 0.5), target 1, classes [0, 0]:
    #   (0.5 - 1)^2 + [(0.5 - 1)^2 + (0.5 - 0)^2] = 0.25 + 0.5 = 0.75
    # Positive, target IoU 0.6, o = ln 3 (C^ = 0.75), classes [ln 3, -ln 3] (0.75, 0.25), label 1:
    #   (0.75 - 0.6)^2 + (0.75 - 0)^2 + (0.25 - 1)^2 = 0.0225 + 0.5625 + 0.5625 = 1.1475
    # Negative, o = 0, lambda 0.5: 0.5 * 0.5^2 = 0.125 (class terms ignored)
    obj = torch.tensor([0.0, LN3, 0.0])
    cls = torch.tensor([[0.0, 0.0], [LN3, -LN3], [5.0, -5.0]])
    out = sse_loss(obj, cls, torch.tensor([0, 1, 2]), torch.tensor([1.0, 0.6, 0.3]), 0.5)
    assert_close(out, torch.tensor([0.75, 1.1475, 0.125]))


def test_sse_matches_direct_loop():
    g = torch.Generator().manual_seed(4)
    n, c, lam = 40, 3, 0.25
    obj = torch.randn(n, generator=g) * 2
    cls = torch.randn(n, c, generator=g) * 2
    labels = torch.randint(0, c + 1, (n,), generator=g)
    tgt = torch.rand(n, generator=g)
    w = torch.rand(n, generator=g)
    sig = lambda x: 1.0 / (1.0 + math.exp(-x))  # noqa: E731
    ref = []
    for i in range(n):
        ch = sig(obj[i].item())
        if labels[i] < c:
            v = (ch - tgt[i].item()) ** 2
            v += sum((sig(cls[i, j].item()) - (1.0 if j == labels[i] else 0.0)) ** 2 for j in range(c))
        else:
            v = lam * ch ** 2
        ref.append(v * w[i].item())
    assert_close(sse_loss(obj, cls, labels, tgt, lam, w), torch.tensor(ref), rtol=1e-5, atol=1e-6)


def test_sse_lambda0_ignores_negative_objectness():
    g = torch.Generator().manual_seed(5)
    obj = torch.randn(30, generator=g)
    cls = torch.randn(30, 2, generator=g)
    labels = torch.randint(0, 3, (30,), generator=g)
    tgt = torch.ones(30)
    neg = labels == 2
    obj2 = obj.clone()
    obj2[neg] += torch.randn(int(neg.sum()), generator=g) * 10
    obj2.requires_grad_(True)
    a = sse_loss(obj, cls, labels, tgt, 0.0)
    b = sse_loss(obj2, cls, labels, tgt, 0.0)
    assert_close(a, b.detach())
    b.sum().backward()
    assert obj2.grad[neg].abs().max().item() == 0.0
    assert obj2.grad[~neg].abs().max().item() > 0.0


# ------------------------------------------------------------------------- all three
@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0, 5.0])
def test_gradients_finite_for_extreme_logits(gamma):
    big = torch.tensor([[100.0, -100.0, 100.0], [-100.0, 100.0, -100.0], [100.0, 100.0, -100.0]])
    labels = torch.tensor([0, 1, 3])  # two positives (right / wrong) and a background anchor
    x = big.clone().requires_grad_(True)
    focal_loss(x, labels, gamma, 0.25).sum().backward()
    assert torch.isfinite(x.grad).all()

    y = torch.cat([big, big[:, :1]], 1).requires_grad_(True)  # C + 1 = 4 logits
    hard_negative_ce(y, labels, 3).sum().backward()
    assert torch.isfinite(y.grad).all()

    o = big[:, 0].clone().requires_grad_(True)
    z = big.clone().requires_grad_(True)
    sse_loss(o, z, labels, torch.ones(3), 0.5).sum().backward()
    assert torch.isfinite(o.grad).all() and torch.isfinite(z.grad).all()


def test_labels_out_of_range_are_rejected():
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 2\]"):
        focal_loss(torch.zeros(2, 2), torch.tensor([0, 3]), 2.0, 0.25)
