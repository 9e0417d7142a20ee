"""Imbalance losses.

:mod:`.functional` holds the pure tensor functions (no MMDetection needed);
:mod:`.modules` holds their registered ``nn.Module`` wrappers.
"""

from lossbench.models.losses.functional import focal_loss, hard_negative_ce, sse_loss

__all__ = ["focal_loss", "hard_negative_ce", "sse_loss"]
