"""The stack fixes of lossbench.compat, each shown to be needed and to work."""

import pickle

import numpy as np
import pytest
import torch
from mmengine.config import ConfigDict
from mmengine.logging import HistoryBuffer
from mmengine.runner.checkpoint import CheckpointLoader, load_from_local, save_checkpoint

from lossbench import compat


@pytest.fixture
def mmengine_checkpoint(tmp_path):
    """A checkpoint shaped like the ones mmengine's Runner writes (meta with numpy & objects)."""
    path = tmp_path / "iter_2.pth"
    ckpt = {
        "meta": {"iter": 2, "seed": np.int64(0), "cfg": ConfigDict(a=1),
                 "message_hub": {"log_scalars": {"train/loss": HistoryBuffer([1.0, 0.5], [1, 1])}}},
        "state_dict": {"w": torch.ones(2)},
    }
    save_checkpoint(ckpt, str(path))
    return path


def test_torch_load_default_rejects_mmengine_checkpoints(mmengine_checkpoint):
    # the breakage itself: torch >= 2.6 defaults to weights_only=True
    with pytest.raises(pickle.UnpicklingError, match="Weights only load failed"):
        torch.load(mmengine_checkpoint)


def test_resume_loader_needs_and_gets_the_fix(mmengine_checkpoint):
    try:
        # mmengine's own local loader, as shipped: fails
        CheckpointLoader.register_scheme(prefixes="", loader=load_from_local, force=True)
        compat._applied = False
        with pytest.raises(pickle.UnpicklingError):
            CheckpointLoader.load_checkpoint(str(mmengine_checkpoint))
    finally:
        compat.apply()
    ckpt = CheckpointLoader.load_checkpoint(str(mmengine_checkpoint))
    assert ckpt["meta"]["iter"] == 2
    assert list(ckpt["meta"]["message_hub"]["log_scalars"]["train/loss"].data[0]) == [1.0, 0.5]
    assert torch.equal(ckpt["state_dict"]["w"], torch.ones(2))


def test_missing_checkpoint_is_a_clear_error(tmp_path):
    compat.apply()
    with pytest.raises(FileNotFoundError, match="nope.pth can not be found"):
        CheckpointLoader.load_checkpoint(str(tmp_path / "nope.pth"))
