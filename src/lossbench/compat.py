"""Fixes for the pinned OpenMMLab stack on current PyTorch, in one place.

Each fix is applied by :func:`apply` (idempotent), which
:mod:`lossbench.models.registry` calls, so every config that loads the study
through ``custom_imports`` gets them; nothing in an installed package is
edited. Each has a test in ``tests/test_compat.py`` that fails without it.

1. **Resume under torch >= 2.6.** ``torch.load`` defaults to
   ``weights_only=True`` since torch 2.6, and mmengine 0.10.7's local
   checkpoint loader calls it without the argument, so resuming from an
   mmengine checkpoint (which pickles the message hub, numpy scalars and the
   config) fails with ``UnpicklingError: Weights only load failed``. We
   re-register mmengine's local-file scheme of ``CheckpointLoader`` (its own
   extension point) with a loader that passes ``weights_only=False``. These
   are checkpoints the study wrote itself; do not point it at files from
   untrusted sources.

Pins that avoid the other breakages of this stack (see the README):
numpy < 2 (mmcv 2.1.0 / mmdet 3.3.0 predate numpy 2), pandas < 3,
opencv-python 4.x (mmcv/mmengine require ``opencv-python``; 5.x is untested by
OpenMMLab), setuptools < 82 to build mmcv (its ``setup.py`` imports
``pkg_resources``).
"""

from __future__ import annotations

import os.path as osp

import torch

_applied = False


def load_local_checkpoint(filename: str, map_location=None):
    """mmengine's ``load_from_local`` with ``weights_only=False``."""
    filename = osp.expanduser(filename)
    if not osp.isfile(filename):
        raise FileNotFoundError(f"{filename} can not be found.")
    return torch.load(filename, map_location=map_location, weights_only=False)


def apply() -> None:
    """Apply every fix once; safe to call repeatedly."""
    global _applied
    if _applied:
        return
    from mmengine.runner.checkpoint import CheckpointLoader

    CheckpointLoader.register_scheme(prefixes="", loader=load_local_checkpoint, force=True)
    _applied = True
