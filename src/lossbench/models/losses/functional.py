"""The focal, OHEM and SSE losses as pure, element-wise tensor functions, and the targets of the IoU-aware
losses (QFL, VFL), whose loss terms are MMDetection's own (:mod:`lossbench.models.losses.modules`).

Every function returns the **per-anchor** loss of shape ``(N,)`` and never reduces: normalisation (by the number of
positive anchors) is the head's job, so the families share it exactly.

Label convention (MMDetection's): ``labels`` is a ``LongTensor (N,)`` with values in ``[0, C]``; ``0 .. C-1`` are
foreground classes and ``C`` means background. The optional ``weights (N,)`` multiply the per-anchor loss; a weight of 0
marks an ignored anchor (MMDetection's ``label_weights``), which also takes no part in hard-negative mining.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["focal_loss", "hard_negative_ce", "sse_loss", "one_hot_targets", "quality_targets", "iou_class_targets"]


def one_hot_targets(labels: Tensor, num_classes: int, dtype: torch.dtype) -> Tensor:
    """One-hot of ``labels (N,)`` over ``num_classes`` columns; background rows are 0.
    Returns a ``(N, C)`` tensor: row ``i`` has a 1 in column ``labels[i]`` if ``labels[i] < C``, else all zeros."""
    if labels.dim() != 1:
        raise ValueError(f"labels must have shape (N,), got {tuple(labels.shape)}")
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) > num_classes):
        raise ValueError(
            f"labels must lie in [0, {num_classes}] ({num_classes} = background), "
            f"got values in [{int(labels.min())}, {int(labels.max())}]")
    onehot = F.one_hot(labels, num_classes + 1)[:, :num_classes]  # (N, C)
    return onehot.to(dtype)


def quality_targets(labels: Tensor, iou: Tensor | None, num_classes: int) -> Tensor:
    """QFL's quality target ``(N,)``: ``iou`` on positives (``labels < C``), 0 on every other anchor, whatever
    ``iou`` holds there (the head fills them with 1)."""
    one_hot_targets(labels, num_classes, torch.float32)  # validates the label range
    if iou is None or iou.shape != labels.shape:
        raise ValueError(f"iou_target must have shape {tuple(labels.shape)} (the IoU of each positive's decoded "
                         f"box with its gt), got {None if iou is None else tuple(iou.shape)}")
    return torch.where(labels < num_classes, iou, torch.zeros_like(iou))


def iou_class_targets(labels: Tensor, iou: Tensor | None, num_classes: int, dtype: torch.dtype) -> Tensor:
    """VFL's target ``(N, C)``: a positive's ``iou`` in the column of its class, 0 everywhere else."""
    q = quality_targets(labels, iou, num_classes)
    return one_hot_targets(labels, num_classes, dtype) * q.to(dtype)[:, None]


def _apply_weights(loss: Tensor, weights: Tensor | None) -> Tensor:
    if weights is None:
        return loss
    if weights.shape != loss.shape:
        raise ValueError(f"weights must have shape {tuple(loss.shape)}, got {tuple(weights.shape)}")
    return loss * weights.to(loss.dtype)


def focal_loss(logits: Tensor, labels: Tensor, gamma: float, alpha: float, weights: Tensor | None = None) -> Tensor:
    r"""Sigmoid focal loss of RetinaNet, summed over classes.

    For every anchor and class, with :math:`p = \sigma(x)` and the binary target :math:`y`, :math:`p_t = p` if
    :math:`y = 1` else :math:`1 - p` and :math:`\alpha_t = \alpha` if :math:`y = 1` else :math:`1 - \alpha`:

    .. math:: FL(p_t) = -\alpha_t (1 - p_t)^\gamma \log(p_t)

    (Lin et al. 2017, "Focal Loss for Dense Object Detection", Eq. 5).
    ``gamma = 0`` is the alpha-balanced binary cross-entropy (Eq. 3).

    Both factors are computed in log space, :math:`\log p_t = \log\sigma(z_t)` and
    :math:`(1 - p_t)^\gamma = \exp(\gamma \log\sigma(-z_t))` with :math:`z_t = x` for positives and :math:`-x`
    otherwise, so values and gradients stay finite for saturated logits (even for ``0 < gamma < 1``, where
    :math:`(1 - p_t)^\gamma` has an infinite slope at 0).

    Args:
        logits: sigmoid logits of shape ``(N, C)``.
        gamma: focusing parameter, ``>= 0``.
        alpha: weight of the positive class, in ``[0, 1]``.
    """
    if logits.dim() != 2 or logits.shape[0] != labels.shape[0]:
        raise ValueError(f"logits must be (N, C) with N = len(labels); got {tuple(logits.shape)} "
                         f"and labels {tuple(labels.shape)}")
    targets = one_hot_targets(labels, logits.shape[1], logits.dtype)  # (N, C)
    z_t = torch.where(targets > 0, logits, -logits)  # (N, C) logit of p_t
    log_p_t = F.logsigmoid(z_t)
    modulating = torch.exp(gamma * F.logsigmoid(-z_t)) if gamma != 0 else torch.ones_like(z_t)
    alpha_t = alpha * targets + (1.0 - alpha) * (1.0 - targets)
    loss = -(alpha_t * modulating * log_p_t).sum(dim=1)  # (N,)
    return _apply_weights(loss, weights)


def hard_negative_ce(logits: Tensor, labels: Tensor, neg_pos_ratio: float | None,
                     weights: Tensor | None = None) -> Tensor:
    r"""Softmax cross-entropy with SSD's hard negative mining, for one image.

    .. math:: L_{conf} = -\sum_{i \in Pos} \log \hat c_i^{p} - \sum_{i \in Neg} \log \hat c_i^{0}

    (Liu et al. 2016, "SSD: Single Shot MultiBox Detector", Eq. 3 and "Hard negative mining"). Every positive anchor
    keeps its cross-entropy; of the negatives, only the ``k = floor(neg_pos_ratio * #pos)`` with the highest
    cross-entropy keep theirs (SSD uses 3:1); all other anchors get 0. ``neg_pos_ratio=None`` keeps every negative, i.e.
    plain softmax CE.

    Positives and mining candidates are the anchors with a non-zero weight. Which of several exactly tied negatives is
    kept is unspecified; the returned total is the same either way.

    An image **without positives keeps no negatives** (``k = 0``), as in SSD and MMDetection's ``SSDHead``: the loss is
    normalised by the number of positives, and a fixed number of negatives per positive is the rule being studied. (With
    ``neg_pos_ratio=None`` every negative is kept as usual.)

    Args:
        logits: softmax logits of shape ``(N, C + 1)``, background last.
        neg_pos_ratio: at most this many negatives per positive (``> 0``), or ``None`` for all negatives.
    """
    if logits.dim() != 2 or logits.shape[0] != labels.shape[0]:
        raise ValueError(f"logits must be (N, C + 1) with N = len(labels); got "
                         f"{tuple(logits.shape)} and labels {tuple(labels.shape)}")
    if neg_pos_ratio is not None and not neg_pos_ratio > 0:
        raise ValueError(f"neg_pos_ratio must be > 0 or None, got {neg_pos_ratio}")
    num_classes = logits.shape[1] - 1
    one_hot_targets(labels, num_classes, logits.dtype)  # validates the label range
    ce = F.cross_entropy(logits, labels, reduction="none")  # (N,)
    valid = torch.ones_like(labels, dtype=torch.bool) if weights is None else weights > 0
    pos = (labels < num_classes) & valid
    neg = (labels == num_classes) & valid
    if neg_pos_ratio is None:
        keep = pos | neg
    else:
        num_neg = int(neg.sum())
        k = min(int(neg_pos_ratio * int(pos.sum())), num_neg)
        keep = pos.clone()
        if k > 0:
            # rank negatives by their (detached) CE; non-candidates sort last
            score = torch.where(neg, ce.detach(), ce.new_full((), float("-inf")))
            keep[score.topk(k).indices] = True
    loss = ce * keep.to(ce.dtype)
    return _apply_weights(loss, weights)


def sse_loss(obj_logits: Tensor, cls_logits: Tensor, labels: Tensor, obj_targets: Tensor,
             lambda_noobj: float, weights: Tensor | None = None) -> Tensor:
    r"""YOLO v1's sum-squared classification terms (terms 3-5), per anchor.

    With :math:`\hat C = \sigma(o)` and :math:`\hat p(c) = \sigma(x_c)`:

    .. math::
        \mathbb 1^{obj} (C - \hat C)^2
        + \lambda_{noobj} \mathbb 1^{noobj} \hat C^2
        + \mathbb 1^{obj} \sum_c (p(c) - \hat p(c))^2

    (Redmon et al. 2016, "You Only Look Once", Eq. 3), where :math:`C` is the objectness target (``obj_targets``: the
    IoU of the predicted box with its ground truth, as in the paper, or 1) and :math:`p(c) = 1[c = label]`.

    Args:
        obj_logits: objectness logits of shape ``(N,)``.
        cls_logits: class logits of shape ``(N, C)``.
        obj_targets: objectness targets ``(N,)`` in ``[0, 1]``; read on positives only.
        lambda_noobj: weight of the no-object term, ``>= 0`` (YOLO: 0.5).
    """
    n = labels.shape[0]
    if obj_logits.shape != (n,) or cls_logits.dim() != 2 or cls_logits.shape[0] != n or obj_targets.shape != (n,):
        raise ValueError(
            f"expected obj_logits (N,), cls_logits (N, C), obj_targets (N,) with N = {n}; got "
            f"{tuple(obj_logits.shape)}, {tuple(cls_logits.shape)}, {tuple(obj_targets.shape)}")
    targets = one_hot_targets(labels, cls_logits.shape[1], cls_logits.dtype)  # (N, C)
    pos = labels < cls_logits.shape[1]
    conf = obj_logits.sigmoid()
    obj_term = torch.where(pos, (conf - obj_targets.to(conf.dtype)) ** 2, lambda_noobj * conf ** 2)
    cls_term = ((cls_logits.sigmoid() - targets) ** 2).sum(dim=1) * pos.to(conf.dtype)
    return _apply_weights(obj_term + cls_term, weights)
