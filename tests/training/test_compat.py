"""The stack fixes of lossbench.training.compat, each shown to be needed and to work."""

import pickle
import re

import numpy as np
import pytest
import torch
from mmengine.logging import HistoryBuffer
from mmengine.model import BaseModel
from mmengine.runner import Runner
from mmengine.runner.checkpoint import (
    CheckpointLoader,
    load_checkpoint,
    load_from_local,
)
from torch import nn

from lossbench.training import compat


class Line(BaseModel):
    """y = w·x + b, trained by mmengine's Runner so that it writes real checkpoints."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(2, 1)

    def forward(self, x, y, mode="loss"):
        return {"loss": ((self.fc(x) - y) ** 2).mean()}


class Points(torch.utils.data.Dataset):
    def __len__(self):
        return 8

    def __getitem__(self, i):
        return dict(x=torch.tensor([i, 1.0]), y=torch.tensor([2.0 * i]))


def _runner(work_dir, max_iters, resume=False):
    return Runner(
        model=Line(), work_dir=str(work_dir), resume=resume, default_scope="mmengine",
        train_dataloader=dict(dataset=Points(), batch_size=2,
                              collate_fn=dict(type="default_collate"),
                              sampler=dict(type="DefaultSampler", shuffle=True)),
        optim_wrapper=dict(optimizer=dict(type="SGD", lr=0.001, momentum=0.9)),
        param_scheduler=dict(type="LinearLR", start_factor=0.1, by_epoch=False, end=2),
        train_cfg=dict(by_epoch=False, max_iters=max_iters),
        default_hooks=dict(checkpoint=dict(type="CheckpointHook", interval=1, by_epoch=False),
                           logger=dict(type="LoggerHook", interval=1)),
        randomness=dict(seed=0), experiment_name=f"line{max_iters}")


@pytest.fixture(scope="module")
def runner_checkpoint(tmp_path_factory):
    """A checkpoint written by mmengine's Runner after 2 iterations (message hub, numpy, ...)."""
    work_dir = tmp_path_factory.mktemp("work")
    _runner(work_dir, max_iters=2).train()
    return work_dir / "iter_2.pth"


class Marker:
    """Unpickling it runs code: it writes ``path``."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (exec, (f"open({self.path!r}, 'w').write('unpickled')",))


def test_torch_load_default_rejects_mmengine_checkpoints(runner_checkpoint):
    # the breakage itself: torch >= 2.6 defaults to weights_only=True
    with pytest.raises(pickle.UnpicklingError, match="Weights only load failed"):
        torch.load(runner_checkpoint)


def test_resume_loader_needs_and_gets_the_fix(runner_checkpoint):
    try:
        # mmengine's own local loader, as shipped: fails
        CheckpointLoader.register_scheme(prefixes="", loader=load_from_local, force=True)
        compat._applied = False
        with pytest.raises(pickle.UnpicklingError):
            CheckpointLoader.load_checkpoint(str(runner_checkpoint))
    finally:
        compat.apply()
    allowed_before = set(map(str, torch.serialization.get_safe_globals()))
    ckpt = CheckpointLoader.load_checkpoint(str(runner_checkpoint))
    assert ckpt["meta"]["iter"] == 2
    losses = ckpt["message_hub"]["log_scalars"]["train/loss"]
    assert isinstance(losses, HistoryBuffer) and len(losses.data[0]) == 2
    assert losses.statistics("mean") == np.mean(losses.data[0])
    assert ckpt["state_dict"]["fc.weight"].shape == (1, 2)
    # the extra types were allowed for that load only, not for every torch.load of the process
    assert set(map(str, torch.serialization.get_safe_globals())) == allowed_before


def test_a_runner_resumes_from_its_checkpoint(runner_checkpoint):
    compat.apply()
    saved = torch.load(runner_checkpoint, weights_only=False)["state_dict"]["fc.weight"]
    runner = _runner(runner_checkpoint.parent, max_iters=3, resume=True)
    runner.train()
    assert runner.iter == 3 and (runner_checkpoint.parent / "iter_3.pth").is_file()
    assert runner.message_hub.get_info("iter") == 2  # where it resumed (set by Runner.resume)
    assert not torch.equal(runner.model.fc.weight.detach(), saved)  # and trained on from there


@pytest.mark.parametrize("write", ["torch.save", "pickle.dump"])
def test_a_pickle_that_runs_code_is_refused(tmp_path, write):
    compat.apply()
    marker, path = tmp_path / "marker", tmp_path / "elsewhere" / "model.pth"
    path.parent.mkdir()
    payload = {"state_dict": {"fc.weight": torch.ones(1, 2)}, "meta": Marker(marker)}
    with open(path, "wb") as f:
        torch.save(payload, f) if write == "torch.save" else pickle.dump(payload, f, protocol=2)
    for load in (lambda: CheckpointLoader.load_checkpoint(str(path)),  # resume
                 lambda: load_checkpoint(Line(), str(path))):  # load_from, Pretrained
        with pytest.raises(pickle.UnpicklingError,
                           match=re.escape(f"refusing to load checkpoint {path}")):
            load()
    assert not marker.exists()


def test_getattr_reaches_history_buffer_statistics_only(tmp_path):
    compat.apply()
    path = tmp_path / "getattr.pth"
    torch.save({"m": np.ndarray.tofile}, path)  # pickled as getattr(numpy.ndarray, 'tofile')
    with pytest.raises(pickle.UnpicklingError, match="tofile.. is not a HistoryBuffer statistics"):
        CheckpointLoader.load_checkpoint(str(path))


def test_missing_checkpoint_is_a_clear_error(tmp_path):
    compat.apply()
    with pytest.raises(FileNotFoundError, match="nope.pth can not be found"):
        CheckpointLoader.load_checkpoint(str(tmp_path / "nope.pth"))
