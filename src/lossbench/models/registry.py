"""Register the study's head and losses into MMDetection's ``MODELS``.

Configs load this module through
``custom_imports = dict(imports=['lossbench.models.registry'])``; importing it
also applies the stack fixes of :mod:`lossbench.compat`.
"""

from lossbench import compat
from lossbench.models.heads import ImbalanceRetinaHead
from lossbench.models.losses.modules import HardNegativeCELoss, ImbalanceFocalLoss, YOLOSSELoss

compat.apply()

__all__ = ["ImbalanceRetinaHead", "ImbalanceFocalLoss", "HardNegativeCELoss", "YOLOSSELoss"]
