"""Registered ``nn.Module`` wrappers of the imbalance losses.

They follow MMDetection's loss contract, ``forward(pred, target, weight=None, avg_factor=None,
reduction_override=None)``, and end in ``weight_reduce_loss``, so a config can use them as any other
``loss_cls``. The element-wise work is in :mod:`lossbench.models.losses.functional`.
"""

from __future__ import annotations

import math

import torch
from mmdet.models.losses.utils import weight_reduce_loss
from mmdet.registry import MODELS
from torch import Tensor, nn

from lossbench.models.losses import functional as LF

_REDUCTIONS = ("none", "mean", "sum")


def _logit(p: float) -> float:
    return math.log(p / (1.0 - p))


def _reduction(default: str, override: str | None) -> str:
    reduction = override or default
    if reduction not in _REDUCTIONS:
        raise ValueError(f"reduction must be one of {_REDUCTIONS}, got {reduction!r}")
    return reduction


class _ImbalanceLoss(nn.Module):
    """What the common head asks of a family's loss, besides ``forward``.

    ``custom_cls_channels`` / ``custom_activation`` are MMDetection's hooks (see
    ``BaseDenseHead._predict_by_feat_single``): the head sizes its output layer with
    :meth:`get_cls_channels` and turns raw outputs into test-time scores with :meth:`get_activation`. Every loss also
    takes ``reduction`` (``'none'``, ``'mean'`` or ``'sum'``) and ``loss_weight`` (a multiplier of the loss).
    """

    custom_cls_channels = True
    custom_activation = True
    #: the head passes ``([B,] A, K)`` per image (SSD's mining ranks anchors per image), not the flattened ``(B*A, K)``
    per_image = False
    #: the head passes ``iou_target``: the IoU of each positive's decoded box with its gt
    needs_iou_target = False

    def __init__(self, reduction: str, loss_weight: float) -> None:
        super().__init__()
        self.reduction, self.loss_weight = _reduction(reduction, None), loss_weight

    def _reduce(self, loss: Tensor, avg_factor: float | None, reduction_override: str | None) -> Tensor:
        return self.loss_weight * weight_reduce_loss(loss, None, _reduction(self.reduction, reduction_override),
                                                     avg_factor)

    def get_cls_channels(self, num_classes: int) -> int:
        raise NotImplementedError

    def get_activation(self, cls_score: Tensor) -> Tensor:
        """Raw outputs ``(N, K)`` -> foreground scores ``(N, C)``."""
        raise NotImplementedError

    def prior_bias(self, num_classes: int, prior_prob: float) -> Tensor:
        """Bias ``(K,)`` of the output layer so that training starts from prior π."""
        raise NotImplementedError


@MODELS.register_module()
class ImbalanceFocalLoss(_ImbalanceLoss):
    """Focal loss (Lin et al. 2017, Eq. 5) on ``(N, C)`` sigmoid logits.

    Args:
        gamma: focusing parameter (>= 0). Defaults to 2.0.
        alpha: positive-class weight in [0, 1]. Defaults to 0.25.
    """

    def __init__(self, gamma: float = 2.0, alpha: float = 0.25, reduction: str = "mean",
                 loss_weight: float = 1.0) -> None:
        super().__init__(reduction, loss_weight)
        self.gamma, self.alpha = float(gamma), float(alpha)

    def forward(self, pred: Tensor, target: Tensor, weight: Tensor | None = None,
                avg_factor: float | None = None, reduction_override: str | None = None) -> Tensor:
        """pred ``(N, C)``, target labels ``(N,)``, weight ``(N,)``."""
        return self._reduce(LF.focal_loss(pred, target, self.gamma, self.alpha, weight), avg_factor, reduction_override)

    def get_cls_channels(self, num_classes: int) -> int:
        return num_classes

    def get_activation(self, cls_score: Tensor) -> Tensor:
        return cls_score.sigmoid()

    def prior_bias(self, num_classes: int, prior_prob: float) -> Tensor:
        # sigma(b) = pi for every class: b = -log((1 - pi) / pi)
        return torch.full((num_classes,), _logit(prior_prob))


@MODELS.register_module()
class HardNegativeCELoss(_ImbalanceLoss):
    """Softmax CE with SSD's per-image hard negative mining.

    ``pred`` is ``(N, C + 1)`` for one image or ``(B, N, C + 1)`` for a batch, in which case negatives
    are mined separately in each image (SSD's rule).

    Args:
        neg_pos_ratio: at most this many negatives per positive, or ``None`` (or ``'all'``) for all
            negatives. Defaults to 3 (SSD).
    """

    per_image = True

    def __init__(self, neg_pos_ratio: float | str | None = 3.0, reduction: str = "mean",
                 loss_weight: float = 1.0) -> None:
        if isinstance(neg_pos_ratio, str):
            if neg_pos_ratio.lower() != "all":
                raise ValueError(f"neg_pos_ratio must be a number > 0, None or 'all', got {neg_pos_ratio!r}")
            neg_pos_ratio = None
        super().__init__(reduction, loss_weight)
        self.neg_pos_ratio = neg_pos_ratio

    def forward(self, pred: Tensor, target: Tensor, weight: Tensor | None = None,
                avg_factor: float | None = None, reduction_override: str | None = None) -> Tensor:
        """pred ``([B,] N, C + 1)``, target ``([B,] N)``, weight ``([B,] N)``.
        With reduction ``'none'`` the result has the shape of ``target``."""
        if pred.dim() == 2:
            loss = LF.hard_negative_ce(pred, target, self.neg_pos_ratio, weight)
        else:
            loss = torch.stack([LF.hard_negative_ce(pred[i], target[i], self.neg_pos_ratio,
                                                    None if weight is None else weight[i])
                                for i in range(pred.shape[0])])
        return self._reduce(loss, avg_factor, reduction_override)

    def get_cls_channels(self, num_classes: int) -> int:
        return num_classes + 1

    def get_activation(self, cls_score: Tensor) -> Tensor:
        return cls_score.softmax(dim=-1)[..., :-1]

    def prior_bias(self, num_classes: int, prior_prob: float) -> Tensor:
        # foreground logits 0, background b: softmax_bg = e^b / (e^b + C) = 1 - pi
        bias = torch.zeros(num_classes + 1)
        bias[-1] = math.log((1.0 - prior_prob) * num_classes / prior_prob)
        return bias


@MODELS.register_module()
class YOLOSSELoss(_ImbalanceLoss):
    """YOLO v1's sum-squared classification terms on ``(N, C + 1)`` logits.

    The last column of ``pred`` is the objectness logit, the first ``C`` the class logits. The objectness
    target of a positive is the IoU of its predicted box with its ground truth (``obj_target='iou'``,
    the paper's; the head passes it as ``iou_target``) or 1.

    Args:
        lambda_noobj: weight of the no-object term (>= 0). Defaults to 0.5.
        obj_target: ``'iou'`` or ``'one'``.
    """

    def __init__(self, lambda_noobj: float = 0.5, obj_target: str = "iou", reduction: str = "mean",
                 loss_weight: float = 1.0) -> None:
        super().__init__(reduction, loss_weight)
        self.lambda_noobj, self.obj_target = float(lambda_noobj), obj_target

    @property
    def needs_iou_target(self) -> bool:
        return self.obj_target == "iou"

    def forward(self, pred: Tensor, target: Tensor, weight: Tensor | None = None,
                avg_factor: float | None = None, reduction_override: str | None = None,
                iou_target: Tensor | None = None) -> Tensor:
        """pred ``(N, C + 1)``, target labels ``(N,)``, iou_target ``(N,)`` (None: 1)."""
        obj_target = pred.new_ones(pred.shape[0]) if iou_target is None else iou_target
        loss = LF.sse_loss(pred[:, -1], pred[:, :-1], target, obj_target, self.lambda_noobj, weight)
        return self._reduce(loss, avg_factor, reduction_override)

    def get_cls_channels(self, num_classes: int) -> int:
        return num_classes + 1

    def get_activation(self, cls_score: Tensor) -> Tensor:
        # YOLO's class-specific confidence: Pr(object) * Pr(class | object)
        return cls_score[..., -1:].sigmoid() * cls_score[..., :-1].sigmoid()

    def prior_bias(self, num_classes: int, prior_prob: float) -> Tensor:
        # only the objectness logit sees every anchor (no-object terms): it starts at pi;
        # the class logits are trained on positives only and start at 0 (sigma = 1/2)
        bias = torch.zeros(num_classes + 1)
        bias[-1] = _logit(prior_prob)
        return bias
