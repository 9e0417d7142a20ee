"""Fixes for the pinned OpenMMLab stack on current PyTorch, in one place.

:func:`apply` (idempotent) is called by :mod:`lossbench.models.registry`, so every config that
loads the study through ``custom_imports`` gets them; nothing in an installed package is edited.
``tests/training/test_compat.py`` fails without each.

1. **Checkpoints load with ``weights_only=True`` and mmengine's types only.** Since torch 2.6
   ``torch.load`` refuses the checkpoints mmengine 0.10.7's Runner writes: their message hub
   pickles ``HistoryBuffer`` objects (numpy arrays; ``HistoryBuffer.min/max/current/mean`` as
   ``getattr``) and numpy scalars. The local-file scheme of mmengine's ``CheckpointLoader`` is
   re-registered with :func:`load_local_checkpoint`, which allows exactly those types
   (:data:`CHECKPOINT_GLOBALS`, found with ``torch.serialization.get_unsafe_globals_in_checkpoint``)
   for ``resume``, ``load_from`` and local ``Pretrained`` paths; a file holding any other object is
   refused, naming it, before anything in it runs. Other schemes stay mmengine's.
The version pins that avoid the stack's other breakages are in ``docs/study.md``.
"""

from __future__ import annotations

import os.path as osp
import pickle

import numpy as np
import torch
from mmengine.logging import HistoryBuffer

_applied = False


def _history_buffer_method(cls, name: str):
    """``getattr`` as checkpoints use it: HistoryBuffer's statistics methods, nothing else."""
    if cls is HistoryBuffer and name in ("min", "max", "current", "mean"):
        return getattr(cls, name)
    raise pickle.UnpicklingError(f"getattr({cls!r}, {name!r}) is not a HistoryBuffer statistics method")


# Everything beyond tensors that a checkpoint of mmengine's Runner holds (numeric numpy only).
CHECKPOINT_GLOBALS = [np.core.multiarray._reconstruct, np.core.multiarray.scalar, np.ndarray,
                      np.dtype, HistoryBuffer, (_history_buffer_method, "builtins.getattr"),
                      *{type(np.dtype(c)) for c in "?" + np.typecodes["AllInteger"] + "efd"}]


def load_local_checkpoint(filename: str, map_location=None):
    """mmengine's ``load_from_local``, unpickling tensors and :data:`CHECKPOINT_GLOBALS` only."""
    filename = osp.expanduser(filename)
    if not osp.isfile(filename):
        raise FileNotFoundError(f"{filename} can not be found.")
    try:
        with torch.serialization.safe_globals(CHECKPOINT_GLOBALS):
            return torch.load(filename, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        why = str(e).rpartition("WeightsUnpickler error:")[2].strip().partition("\n")[0].partition(". ")[0]
        raise pickle.UnpicklingError(
            f"refusing to load checkpoint {filename}: it holds objects other than tensors and mmengine's "
            f"checkpoint types ({why}), and unpickling them could run code; if you trust it, load it with "
            "torch.load(weights_only=False) and save its state_dict") from None


def apply() -> None:
    """Apply every fix once; safe to call repeatedly."""
    global _applied
    if _applied:
        return
    from mmengine.runner.checkpoint import CheckpointLoader

    CheckpointLoader.register_scheme(prefixes="", loader=load_local_checkpoint, force=True)
    _applied = True
