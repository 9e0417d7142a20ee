"""Register the study's head and losses into MMDetection's ``MODELS`` and apply the stack fixes
of :mod:`lossbench.training.compat`; configs load it through ``custom_imports``."""

import lossbench.training.evaluation  # noqa: F401  (registers DetectionRecords in mmdet's METRICS)
from lossbench.models.heads import ImbalanceRetinaHead
from lossbench.models.losses.modules import (
    HardNegativeCELoss,
    ImbalanceFocalLoss,
    ImbalanceGHMCLoss,
    ImbalanceQualityFocalLoss,
    ImbalanceVarifocalLoss,
    SamplingFreeCELoss,
    YOLOSSELoss,
)
from lossbench.training import compat

compat.apply()

__all__ = ["ImbalanceRetinaHead", "ImbalanceFocalLoss", "HardNegativeCELoss", "YOLOSSELoss", "ImbalanceGHMCLoss",
           "ImbalanceQualityFocalLoss", "ImbalanceVarifocalLoss", "SamplingFreeCELoss"]
