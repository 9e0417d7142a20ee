"""The common head: RetinaNet with a swappable classification loss.

:class:`ImbalanceRetinaHead` keeps everything of MMDetection's :class:`~mmdet.models.dense_heads.RetinaHead`
(towers, anchors, assigner, L1 box loss, NMS) and changes only the classification output layer and loss:

========  ===========================  ==================================  =================
family    outputs per anchor           classification loss                 test-time score
========  ===========================  ==================================  =================
focal     C sigmoid logits             focal loss                          σ(x_c)
ohem      C + 1 softmax (bg last)      CE, per-image hard neg. mining      softmax_c
sse       C class + 1 objectness last  YOLO v1 SSE terms 3-5               σ(o)·σ(x_c)
ghm       C sigmoid logits             GHM-C (gradient density weights)    σ(x_c)
qfl       C sigmoid logits             quality focal loss, IoU targets     σ(x_c)
vfl       C sigmoid logits             varifocal loss, IoU targets         σ(x_c)
ce_prior  C sigmoid logits             BCE, data-prior bias, guided scale  σ(x_c)
========  ===========================  ==================================  =================

Every family's classification loss is normalised by the number of positive anchors in the batch
(MMDetection's ``avg_factor``), except where the method's own normalisation is intrinsic: the loss
module's ``normaliser`` (GHM-C divides by the number of valid (anchor, class) entries, its *N*), and
``rescale`` then gives the loss as optimised (the sampling-free CE's guided scaling to the box loss).
The prior-probability bias init of Lin et al. (2017, Sec. 4.1),
π = ``prior_prob``, goes only to the logits that face the foreground/background imbalance: the
sigmoid families' class logits (focal, ghm, qfl, vfl: start at π), OHEM's softmax background (at 1 - π),
SSE's objectness (at π; its class logits, trained on positives only, start at 0). A loss with
``prior_from_data`` (ce_prior) instead starts from the data's optimum: on the first training batch,
before any optimizer step, the head counts π = (positive (anchor, class) entries) / (valid (anchor,
class) entries) -- summed over every process of a distributed run, so all ranks agree -- sets the bias
to the loss's ``prior_bias`` of that π, and shifts this batch's logits by the same amount (exactly the
logits the new bias gives). The measured π is the ``data_prior`` buffer (0 until measured), saved in
checkpoints so that a resumed run keeps its trained bias, and logged as ``diag_prior_pi``.
``prior_prob=None``: every bias starts at 0 (and ce_prior measures nothing).
"""

from __future__ import annotations

import math
from numbers import Real

import torch
from mmdet.models.dense_heads import RetinaHead
from mmdet.models.losses.utils import weight_reduce_loss
from mmdet.registry import MODELS
from mmdet.structures.bbox import bbox_overlaps, cat_boxes, get_box_tensor
from mmengine.dist import all_reduce
from mmengine.logging import print_log
from torch import Tensor

from lossbench.families import loss_cfg, validate_imbalance

# An anchor is an *easy* negative when its background probability, 1 - (its highest test-time
# foreground score) for every family, exceeds this value (the diagnostics of every family).
EASY_BG_PROB = 0.9


@MODELS.register_module()
class ImbalanceRetinaHead(RetinaHead):
    """RetinaHead whose classification loss is one of the study's families.

    Args:
        num_classes: number of foreground classes C.
        in_channels: channels of the FPN features.
        imbalance: the family and its knobs, e.g. ``dict(type='focal', gamma=2.0, alpha=0.25)``,
            ``dict(type='ohem', neg_pos_ratio=3)`` or ``dict(type='sse', lambda_noobj=0.5,
            obj_target='iou')`` (:func:`lossbench.families.validate_imbalance`). ``obj_target`` is
            YOLO's objectness target on positives: ``'iou'`` (the IoU of the decoded prediction with
            its assigned box, as in the paper) or ``'one'``.
        prior_prob: π of the prior bias init (module docstring); ``None``: every bias starts at 0. A loss
            with ``prior_from_data`` (ce_prior) measures its π on the first batch unless this is ``None``.
        cls_weight: the classification loss's weight (> 0), its ``loss_weight``. Defaults to 1.
        **kwargs: everything else goes to :class:`RetinaHead`; ``loss_cls`` must not be given (it
            follows from ``imbalance``).
    """

    def __init__(self, num_classes: int, in_channels: int,
                 imbalance: dict = dict(type="focal", gamma=2.0, alpha=0.25),  # noqa: B006 (read only)
                 prior_prob: float | None = 0.01, cls_weight: float = 1.0, **kwargs) -> None:
        if "loss_cls" in kwargs:
            raise ValueError("ImbalanceRetinaHead builds loss_cls from `imbalance`; "
                             "remove model.bbox_head.loss_cls from the config")
        if prior_prob is not None and not 0.0 < prior_prob < 1.0:
            raise ValueError(f"model.bbox_head.prior_prob must be in (0, 1) or None (no prior init), got {prior_prob}")
        if (isinstance(cls_weight, bool) or not isinstance(cls_weight, Real) or not math.isfinite(cls_weight)
                or cls_weight <= 0):
            raise ValueError(f"model.bbox_head.cls_weight must be a finite number > 0, got {cls_weight!r}")
        self.imbalance = validate_imbalance(dict(imbalance))
        self.prior_prob = None if prior_prob is None else float(prior_prob)
        self.cls_weight = float(cls_weight)
        super().__init__(num_classes, in_channels,
                         loss_cls={**loss_cfg(self.imbalance), "loss_weight": self.cls_weight}, **kwargs)
        self._prior_set = False  # caches data_prior > 0
        if self.loss_cls.prior_from_data:  # only then: the other families' checkpoints keep their keys
            self.register_buffer("data_prior", torch.zeros(()))

    @property
    def family(self) -> str:
        return self.imbalance["type"]

    def _init_layers(self) -> None:
        # The loss module says how many logits an anchor needs (C or C + 1).
        self.cls_out_channels = self.loss_cls.get_cls_channels(self.num_classes)
        super()._init_layers()

    def init_weights(self) -> None:
        super().init_weights()
        if self.prior_prob is None:
            bias = torch.zeros(self.cls_out_channels)
        else:
            bias = self.loss_cls.prior_bias(self.num_classes, self.prior_prob)  # (K,)
        with torch.no_grad():
            # channel a*K + k of retina_cls is logit k of base anchor a
            self.retina_cls.bias.copy_(bias.repeat(self.num_base_priors))
            if self.loss_cls.prior_from_data:  # a fresh bias: measure the data's prior again
                self.data_prior.zero_()
        self._prior_set = False

    # ------------------------------------------------------------------ data prior (prior_from_data)
    def _wants_data_prior(self) -> bool:
        if not self.loss_cls.prior_from_data or self.prior_prob is None or self._prior_set:
            return False
        self._prior_set = bool(self.data_prior > 0)  # measured before a resume, restored from the checkpoint
        return not self._prior_set

    @torch.no_grad()
    def measure_prior(self, labels: Tensor, weights: Tensor) -> float:
        """π of a batch: positive (anchor, class) entries / valid (anchor, class) entries, counted over every
        process (``mmengine.dist.all_reduce``; alone, this batch), kept within [1, n - 1] / n (n the valid entries)."""
        valid = weights > 0
        counts = torch.stack([((labels < self.num_classes) & valid).sum(), valid.sum()]).double()
        all_reduce(counts)  # sum over processes; a no-op outside a process group
        pos, anchors = counts.tolist()
        entries = max(anchors * self.num_classes, 2.0)
        return min(max(pos, 1.0), entries - 1.0) / entries

    def _set_data_prior(self, cls: Tensor, labels: Tensor, weights: Tensor) -> Tensor:
        """Set the bias from this batch's π and return the batch's logits ``(B, A, K)`` as the new bias gives them."""
        pi = self.measure_prior(labels, weights)
        bias = self.retina_cls.bias
        new = self.loss_cls.prior_bias(self.num_classes, pi).to(bias).repeat(self.num_base_priors)
        delta = (new - bias.detach()).reshape(self.num_base_priors, self.cls_out_channels)
        with torch.no_grad():
            bias.copy_(new)
            self.data_prior.fill_(pi)
        self._prior_set = True
        print_log(f"{type(self.loss_cls).__name__}: bias set from the first batch's positive share "
                  f"pi = {pi:.6g} (log(pi / (1 - pi)) = {math.log(pi / (1.0 - pi)):.4f})", logger="current")
        b, n, k = cls.shape  # the base anchors of a location are consecutive, base anchor a at a
        shifted = cls.reshape(b, n // self.num_base_priors, self.num_base_priors, k) + delta.to(cls.dtype)
        return shifted.reshape(b, n, k)

    # ------------------------------------------------------------------ loss
    def _flatten(self, maps: list[Tensor], channels: int) -> Tensor:
        """Level maps ``(B, A*K, H, W)`` -> ``(B, sum_l H_l*W_l*A, K)``, levels in order."""
        return torch.cat([m.permute(0, 2, 3, 1).reshape(m.shape[0], -1, channels) for m in maps], dim=1)

    def loss_by_feat(self, cls_scores: list[Tensor], bbox_preds: list[Tensor], batch_gt_instances,
                     batch_img_metas, batch_gt_instances_ignore=None) -> dict:
        """Losses and imbalance diagnostics of a batch.

        Targets come from :meth:`AnchorHead.get_targets` (assigner, ignore band, PseudoSampler) as in the stock head.
        All FPN levels of an image are flattened together so that OHEM mines across levels, per image.

        Returns:
            dict with ``loss_cls``, ``loss_bbox`` and the diagnostics ``diag_*`` (:meth:`diagnostics`),
            logged but not optimised (their names do not contain "loss").
        """
        featmap_sizes = [m.size()[-2:] for m in cls_scores]
        device = cls_scores[0].device
        anchor_list, valid_flag_list = self.get_anchors(featmap_sizes, batch_img_metas, device=device)
        (labels_list, label_weights_list, bbox_targets_list, bbox_weights_list, avg_factor) = self.get_targets(
            anchor_list, valid_flag_list, batch_gt_instances, batch_img_metas,
            batch_gt_instances_ignore=batch_gt_instances_ignore)
        labels = torch.cat(labels_list, dim=1)  # (B, A)
        weights = torch.cat(label_weights_list, dim=1)  # (B, A)
        bbox_targets = torch.cat(bbox_targets_list, dim=1)  # (B, A, 4)
        bbox_weights = torch.cat(bbox_weights_list, dim=1)  # (B, A, 4)
        cls = self._flatten(cls_scores, self.cls_out_channels)  # (B, A, K)
        deltas = self._flatten(bbox_preds, self.bbox_coder.encode_size)  # (B, A, 4)
        num_imgs, num_anchors = labels.shape
        if self._wants_data_prior():
            cls = self._set_data_prior(cls, labels, weights)

        extra = {}
        if self.loss_cls.needs_iou_target:
            extra["iou_target"] = self._iou_target(anchor_list, deltas, bbox_targets, labels)
        if self.loss_cls.per_image:  # e.g. SSD's mining ranks the anchors of each image
            per_anchor = self.loss_cls(cls, labels, weights, reduction_override="none", **extra)
        else:
            per_anchor = self.loss_cls(cls.flatten(0, 1), labels.flatten(), weights.flatten(),
                                       reduction_override="none", **extra)
        per_anchor = per_anchor.reshape(num_imgs, num_anchors)  # (B, A)
        loss_cls = weight_reduce_loss(per_anchor, None, "mean", self.loss_cls.normaliser(avg_factor, cls, weights))
        loss_bbox = self.loss_bbox(deltas.reshape(-1, 4), bbox_targets.reshape(-1, 4),
                                   bbox_weights.reshape(-1, 4), avg_factor=avg_factor)
        losses = dict(loss_cls=self.loss_cls.rescale(loss_cls, loss_bbox), loss_bbox=loss_bbox)
        losses.update(self.diagnostics(cls.detach(), labels, weights, per_anchor.detach()))
        if self.loss_cls.prior_from_data:
            losses["diag_prior_pi"] = self.data_prior.detach().clone().to(per_anchor.dtype)
        return losses

    def _iou_target(self, anchor_list, deltas: Tensor, bbox_targets: Tensor, labels: Tensor) -> Tensor:
        """Per anchor ``(B*A,)``: the IoU of a positive's decoded box with its gt (no gradient),
        1 elsewhere (never read: YOLO's objectness, QFL's and VFL's targets take it on positives only)."""
        target = deltas.new_ones(labels.numel())
        pos = (labels < self.num_classes).flatten()
        if pos.any():
            anchors = torch.stack([get_box_tensor(cat_boxes(a)) for a in anchor_list])  # (B, A, 4)
            anchors = anchors.reshape(-1, 4)[pos]
            pred = get_box_tensor(self.bbox_coder.decode(anchors, deltas.detach().reshape(-1, 4)[pos]))
            gt = get_box_tensor(self.bbox_coder.decode(anchors, bbox_targets.reshape(-1, 4)[pos]))
            target[pos] = bbox_overlaps(pred, gt, is_aligned=True).clamp(0, 1)
        return target

    @torch.no_grad()
    def diagnostics(self, cls: Tensor, labels: Tensor, weights: Tensor, per_anchor: Tensor) -> dict:
        """The imbalance, measured on one batch.

        Args:
            cls: raw classification outputs ``(B, A, K)``.
            labels: ``(B, A)`` with ``C`` = background.
            weights: ``(B, A)``, 0 for ignored anchors.
            per_anchor: the per-anchor classification loss ``(B, A)``.

        Returns:
            ``diag_anchors_per_img`` (anchors of an image), ``diag_pos_per_img`` (positive anchors per
            image), ``diag_share_pos`` / ``diag_share_hard_neg`` / ``diag_share_easy_neg`` (shares of
            the classification loss; they sum to 1) and ``diag_easy_neg_frac`` (share of the negatives
            that are easy: background probability 1 - max_c score_c above :data:`EASY_BG_PROB`).
        """
        num_imgs, num_anchors = labels.shape
        pos = (labels < self.num_classes) & (weights > 0)
        neg = (labels == self.num_classes) & (weights > 0)
        fg = self.loss_cls.get_activation(cls.reshape(-1, cls.shape[-1]).float())  # (B*A, C)
        bg_prob = 1.0 - fg.max(dim=1).values.reshape(num_imgs, num_anchors)
        easy = neg & (bg_prob > EASY_BG_PROB)
        hard = neg & ~easy
        total = per_anchor.sum().clamp(min=torch.finfo(per_anchor.dtype).tiny)
        one = per_anchor.new_tensor
        return dict(
            diag_anchors_per_img=one(float(num_anchors)), diag_pos_per_img=pos.sum().to(per_anchor.dtype) / num_imgs,
            diag_share_pos=per_anchor[pos].sum() / total, diag_share_hard_neg=per_anchor[hard].sum() / total,
            diag_share_easy_neg=per_anchor[easy].sum() / total,
            diag_easy_neg_frac=easy.sum().to(per_anchor.dtype) / neg.sum().clamp(min=1))
