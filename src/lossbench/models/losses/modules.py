"""Registered ``nn.Module`` wrappers of the imbalance losses.

They follow MMDetection's loss contract, ``forward(pred, target, weight=None, avg_factor=None,
reduction_override=None)``, and end in ``weight_reduce_loss``, so a config can use them as any other
``loss_cls``. The element-wise work of focal, OHEM and SSE is in :mod:`lossbench.models.losses.functional`;
GHM-C, QFL, VFL and the sampling-free CE call MMDetection's own losses (``GHMC``, ``QualityFocalLoss``,
``VarifocalLoss``, ``CrossEntropyLoss(use_sigmoid=True)``) with ``reduction='none'`` and sum their
``(N, C)`` terms per anchor.
"""

from __future__ import annotations

import math

import torch
from mmdet.models.losses import GHMC, CrossEntropyLoss, QualityFocalLoss, VarifocalLoss
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
    #: the head sets the output layer's bias to :meth:`prior_bias` of the share of positive (anchor, class)
    #: entries it measures on the first training batch, instead of ``prior_prob`` (see ``ImbalanceRetinaHead``)
    prior_from_data = False

    def __init__(self, reduction: str, loss_weight: float) -> None:
        super().__init__()
        self.reduction, self.loss_weight = _reduction(reduction, None), loss_weight

    def _reduce(self, loss: Tensor, avg_factor: float | None, reduction_override: str | None) -> Tensor:
        return self.loss_weight * weight_reduce_loss(loss, None, _reduction(self.reduction, reduction_override),
                                                     avg_factor)

    def normaliser(self, num_pos: float, pred: Tensor, weight: Tensor) -> float:
        """What the head divides the summed per-anchor loss by: ``num_pos``, the number of positive anchors
        (MMDetection's ``avg_factor``), the study's common control. A family whose own normalisation is part
        of the method overrides it (GHM-C)."""
        return num_pos

    def rescale(self, loss_cls: Tensor, loss_bbox: Tensor) -> Tensor:
        """The normalised classification loss as it is optimised, given the box loss of the same batch:
        unchanged (the sampling-free CE overrides it with its guided loss scaling)."""
        return loss_cls

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


class _SigmoidLoss(_ImbalanceLoss):
    """C sigmoid logits per anchor, σ(x_c) as the test-time score, prior bias init as focal's."""

    def get_cls_channels(self, num_classes: int) -> int:
        return num_classes

    def get_activation(self, cls_score: Tensor) -> Tensor:
        return cls_score.sigmoid()

    def prior_bias(self, num_classes: int, prior_prob: float) -> Tensor:
        # sigma(b) = pi for every class
        return torch.full((num_classes,), _logit(prior_prob))


def _label_weight(pred: Tensor, weight: Tensor | None) -> Tensor:
    return pred.new_ones(pred.shape[0]) if weight is None else weight.to(pred.dtype)


@MODELS.register_module()
class ImbalanceGHMCLoss(_SigmoidLoss):
    r"""GHM-C, the gradient harmonizing classification loss (Li et al. 2019, "Gradient Harmonized
    Single-stage Detector", AAAI 2019), on ``(N, C)`` sigmoid logits: MMDetection's ``GHMC``.

    Every valid (anchor, class) entry *i* of the batch pays its binary cross-entropy weighted by
    :math:`\beta_i = N / GD(g_i)`, with :math:`g_i = |\sigma(x_i) - y_i|` (detached) the gradient norm, *N* the
    number of valid entries and the gradient density :math:`GD(g) = R(g) \cdot n`: :math:`R(g)` the number of
    entries in g's bin of ``bins`` equal bins of [0, 1] (with ``momentum`` > 0, the moving average of the bin
    counts over steps, a buffer of this module, kept in checkpoints), *n* the number of non-empty bins.
    ``forward(..., reduction_override='none')`` returns per anchor
    :math:`\sum_c \beta_{ic} BCE_{ic}` (``GHMC``'s own weighted terms, summed over classes).

    Normalisation (intrinsic, not by the number of positives): the loss is the paper's
    :math:`\frac1N \sum_i \beta_i BCE_i`; :meth:`normaliser` gives the head *N* (the valid entries of the batch,
    as ``GHMC``'s ``tot``), so the head's ``loss_cls`` equals ``GHMC(pred, labels, label_weights)`` exactly. The
    gradient density is measured over the whole batch (all images, all levels, flattened by the head), once per
    step.

    Deviations from the paper:

    * GD multiplies by the number of *non-empty* bins *n*, not by ``bins`` M (GD(g) = R(g)·M in the paper):
      the authors' released code and MMDetection's ``GHMC``.
    * With momentum, only the counts of non-empty bins are updated and they start at 0 without bias correction
      (the first steps' β is up to 1 / (1 - momentum) larger): the authors' code and MMDetection's.
    * The box loss stays the common L1 (the paper pairs GHM-C with GHM-R / ASL1).
    * Computed in float32 (under mixed precision, N / GD overflows float16 on large batches).
    * Under distributed training each process measures the density of its own batch (as MMDetection).

    Args:
        bins: number of bins M of [0, 1] (an integer >= 1). Defaults to 30 (the paper).
        momentum: of the bin counts' moving average, in [0, 1); 0: this batch's counts. Defaults to 0.75 (the paper).
    """

    def __init__(self, bins: int = 30, momentum: float = 0.75, reduction: str = "mean",
                 loss_weight: float = 1.0) -> None:
        super().__init__(reduction, loss_weight)
        if float(bins) != int(bins) or int(bins) < 1:
            raise ValueError(f"bins must be an integer >= 1, got {bins!r}")
        if not 0.0 <= float(momentum) < 1.0:
            raise ValueError(f"momentum must be in [0, 1), got {momentum!r}")
        self.bins, self.momentum = int(bins), float(momentum)
        self.ghmc = GHMC(bins=self.bins, momentum=self.momentum, use_sigmoid=True, loss_weight=1.0, reduction="none")

    def forward(self, pred: Tensor, target: Tensor, weight: Tensor | None = None,
                avg_factor: float | None = None, reduction_override: str | None = None) -> Tensor:
        """pred ``(N, C)``, target labels ``(N,)`` (C = background), weight ``(N,)``; ``'mean'`` without
        ``avg_factor`` divides by the number of valid entries, as ``GHMC``. Each call updates the momentum buffer."""
        reduction = _reduction(self.reduction, reduction_override)
        LF.one_hot_targets(target, pred.shape[1], pred.dtype)  # validates the label range
        weight = _label_weight(pred, weight).float()
        terms = self.ghmc(pred.float(), target, weight, reduction_override="none")  # (N, C): beta * BCE
        if avg_factor is None and reduction == "mean":
            avg_factor = self.normaliser(None, pred, weight)
        return self._reduce(terms.sum(dim=1), avg_factor, reduction)

    def normaliser(self, num_pos: float | None, pred: Tensor, weight: Tensor) -> float:
        """N, the number of valid (anchor, class) entries (``GHMC``'s ``tot``), whatever the positives."""
        return max(float((weight > 0).sum()) * pred.shape[-1], 1.0)


@MODELS.register_module()
class ImbalanceQualityFocalLoss(_SigmoidLoss):
    r"""Quality focal loss (Li et al. 2020, "Generalized Focal Loss", NeurIPS 2020) on ``(N, C)`` sigmoid logits:
    MMDetection's ``QualityFocalLoss``.

    .. math:: QFL(\sigma) = -|y - \sigma|^\beta ((1 - y)\log(1 - \sigma) + y\log\sigma)

    with the soft target *y* = the IoU of a positive's decoded box with its gt (``iou_target``, no gradient) at
    its class, 0 at its other classes and for every negative (the head's 1 outside the positives is never read).
    Normalised by the number of positives, as GFL.

    Deviations from the paper: MaxIoU assigner on RetinaNet anchors instead of ATSS; L1 box loss instead of
    GIoU + distribution focal loss; the box loss is not weighted by the predicted score; float32.

    Args:
        beta: modulating exponent (>= 0). Defaults to 2.0 (the paper).
    """

    needs_iou_target = True

    def __init__(self, beta: float = 2.0, reduction: str = "mean", loss_weight: float = 1.0) -> None:
        super().__init__(reduction, loss_weight)
        self.beta = float(beta)
        self.qfl = QualityFocalLoss(use_sigmoid=True, beta=self.beta, reduction="none", loss_weight=1.0)

    def forward(self, pred: Tensor, target: Tensor, weight: Tensor | None = None,
                avg_factor: float | None = None, reduction_override: str | None = None,
                iou_target: Tensor | None = None) -> Tensor:
        """pred ``(N, C)``, target labels ``(N,)``, weight ``(N,)``, iou_target ``(N,)`` (read on positives)."""
        score = LF.quality_targets(target, iou_target, pred.shape[1]).float()  # (N,)
        loss = self.qfl(pred.float(), (target, score), _label_weight(pred, weight).float(),
                        reduction_override="none")
        return self._reduce(loss, avg_factor, reduction_override)


@MODELS.register_module()
class ImbalanceVarifocalLoss(_SigmoidLoss):
    r"""Varifocal loss (Zhang et al. 2021, "VarifocalNet", CVPR 2021) on ``(N, C)`` sigmoid logits: MMDetection's
    ``VarifocalLoss`` with ``iou_weighted=True``.

    .. math:: VFL(p, q) = -q(q\log p + (1 - q)\log(1 - p)) \text{ if } q > 0, \quad
              -\alpha p^\gamma \log(1 - p) \text{ if } q = 0

    with the target ``(N, C)`` *q* = the IoU of a positive's decoded box with its gt (``iou_target``, no
    gradient) at its class, 0 elsewhere. Normalised by the number of positives, as VarifocalNet.

    Deviations from the paper: MaxIoU assigner on RetinaNet anchors instead of ATSS; no star-shaped box
    refinement (the IoU is the decoded box's); L1 box loss instead of GIoU; float32.

    Args:
        vfl_gamma: negatives' modulating exponent γ (>= 0). Defaults to 2.0 (the paper).
        vfl_alpha: negatives' weight α in [0, 1]. Defaults to 0.75 (the paper).
    """

    needs_iou_target = True

    def __init__(self, vfl_gamma: float = 2.0, vfl_alpha: float = 0.75, reduction: str = "mean",
                 loss_weight: float = 1.0) -> None:
        super().__init__(reduction, loss_weight)
        self.gamma, self.alpha = float(vfl_gamma), float(vfl_alpha)
        self.vfl = VarifocalLoss(use_sigmoid=True, alpha=self.alpha, gamma=self.gamma, iou_weighted=True,
                                 reduction="none", loss_weight=1.0)

    def forward(self, pred: Tensor, target: Tensor, weight: Tensor | None = None,
                avg_factor: float | None = None, reduction_override: str | None = None,
                iou_target: Tensor | None = None) -> Tensor:
        """pred ``(N, C)``, target labels ``(N,)``, weight ``(N,)``, iou_target ``(N,)`` (read on positives)."""
        q = LF.iou_class_targets(target, iou_target, pred.shape[1], torch.float32)  # (N, C)
        w = _label_weight(pred, weight).float()[:, None].expand(q.shape)
        loss = self.vfl(pred.float(), q, w, reduction_override="none").sum(dim=1)
        return self._reduce(loss, avg_factor, reduction_override)


@MODELS.register_module()
class SamplingFreeCELoss(_SigmoidLoss):
    """The sampling-free mechanism (Chen et al. 2019, "Is Heuristic Sampling Necessary in Training Deep
    Object Detectors?"): plain sigmoid cross-entropy over every anchor (no sampling, no focal term;
    MMDetection's ``CrossEntropyLoss(use_sigmoid=True)``, summed over classes), with

    * optimal bias initialisation: ``prior_from_data``: on the first training batch the head measures π, the
      share of positive (anchor, class) entries among the valid ones, and sets every class bias to
      :meth:`prior_bias` = log(π / (1 - π)), the minimiser of the initial loss (see ``ImbalanceRetinaHead``);
    * guided loss scaling (``scaling='on'``): :meth:`rescale` multiplies the normalised classification loss by
      ``loss_weight * loss_bbox / loss_cls``, both detached, so that it equals the box loss in value (times the
      classification-loss weight) while its gradient is the plain CE's times that constant.

    Deviations from the paper:

    * π is measured on the first training batch (all processes together), not over the whole training set.
    * The third ingredient, the class-adaptive test-time threshold, is left out (the study's common
      test-time rule applies).
    * Without a box loss (a batch without positives) the guided scale is 0: the batch trains nothing.
    * Normalised by the number of positives before the scaling (which cancels any normalisation when on).

    Args:
        scaling: ``'on'`` (the paper) or ``'off'`` (plain CE normalised by the number of positives).
    """

    prior_from_data = True

    def __init__(self, scaling: str = "on", reduction: str = "mean", loss_weight: float = 1.0) -> None:
        if scaling not in ("on", "off"):
            raise ValueError(f"scaling must be 'on' or 'off', got {scaling!r}")
        super().__init__(reduction, loss_weight)
        self.scaling = scaling
        self.ce = CrossEntropyLoss(use_sigmoid=True, reduction="none", loss_weight=1.0)

    def forward(self, pred: Tensor, target: Tensor, weight: Tensor | None = None,
                avg_factor: float | None = None, reduction_override: str | None = None) -> Tensor:
        """pred ``(N, C)``, target labels ``(N,)`` (C = background), weight ``(N,)``."""
        LF.one_hot_targets(target, pred.shape[1], pred.dtype)  # validates the label range
        terms = self.ce(pred.float(), target, _label_weight(pred, weight).float(), reduction_override="none")
        return self._reduce(terms.sum(dim=1), avg_factor, reduction_override)

    def scale(self, loss_cls: Tensor, loss_bbox: Tensor) -> Tensor:
        """The guided scale, a constant (no gradient): ``loss_weight * loss_bbox / loss_cls``; 1 when off,
        0 when ``loss_cls`` is 0."""
        if self.scaling == "off":
            return loss_cls.new_ones(())
        cls, box = loss_cls.detach(), loss_bbox.detach().to(loss_cls.dtype)
        return torch.where(cls > 0, self.loss_weight * box / torch.where(cls > 0, cls, 1.0), 0.0)

    def rescale(self, loss_cls: Tensor, loss_bbox: Tensor) -> Tensor:
        return loss_cls if self.scaling == "off" else loss_cls * self.scale(loss_cls, loss_bbox)
