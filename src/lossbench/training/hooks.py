"""MMEngine hooks of the study, registered in MMEngine's ``HOOKS``, and the run's DVCLive backend."""

from __future__ import annotations

import hashlib
import math
from pathlib import Path

import torch
from mmengine.dist import all_reduce, get_rank, is_distributed
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmengine.registry import HOOKS, VISBACKENDS
from mmengine.visualization import DVCLiveVisBackend
from mmengine.visualization.vis_backend import force_init_env


class NonFiniteLossError(RuntimeError):
    """Training produced a NaN or infinite loss."""


@HOOKS.register_module()
class ChannelsLastHook(Hook):
    """Put the model's parameters in ``channels_last`` memory format before training (after
    initialisation and resume); convolutions then take and give NHWC tensors. On the CPU
    this is the faster layout for oneDNN's convolutions (``make bench``); the values computed
    change only by floating-point summation order."""

    priority = "VERY_HIGH"

    def before_train(self, runner) -> None:
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        model.to(memory_format=torch.channels_last)


@HOOKS.register_module()
class FiniteLossHook(Hook):
    """Stop training at the first NaN/inf loss, naming the run (``run_name``, default the experiment
    name) and the iteration, before any metric is written. Data-parallel processes agree every
    iteration (one all-reduce of a flag), so all stop together."""

    priority = "VERY_HIGH"

    def __init__(self, run_name: str | None = None) -> None:
        self.run_name = run_name

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        if not outputs:
            return
        values = {k: float(v.detach()) if hasattr(v, "detach") else float(v) for k, v in outputs.items() if "loss" in k}
        bad = {k: v for k, v in values.items() if not math.isfinite(v)}
        elsewhere = False
        if is_distributed():
            flag = torch.tensor([1.0 if bad else 0.0])
            all_reduce(flag)
            elsewhere = flag.item() > 0 and not bad
        if bad or elsewhere:
            name = self.run_name or runner.experiment_name
            terms = ", ".join(f"{k}={v}" for k, v in bad.items()) or f"in another process than rank {get_rank()}"
            raise NonFiniteLossError(f"run {name!r}: loss became non-finite at iteration {runner.iter + 1} ({terms}); "
                                     "no metrics were written")


@HOOKS.register_module()
class ResumedCurvesHook(Hook):
    """When a run resumes, drop the rows of ``dvclive_dir``'s curves logged after its checkpoint
    (they are logged again), so every step appears once; ``runner.iter``, the checkpoint's
    iteration, is kept as ``resumed_from_iter``."""

    priority = "VERY_HIGH"

    def __init__(self, dvclive_dir: str) -> None:
        self.dvclive_dir = dvclive_dir
        self.resumed_from_iter = 0

    def before_train(self, runner) -> None:
        from lossbench.training.resume import truncate_curves

        self.resumed_from_iter = runner.iter
        if runner.iter > 0 and get_rank() == 0:
            truncate_curves(Path(self.dvclive_dir), runner.iter)


def param_digest(model) -> str:
    """SHA-256 over every parameter's name and bytes (the unwrapped model's)."""
    model = model.module if is_model_wrapper(model) else model
    h = hashlib.sha256()
    for name, p in sorted(model.named_parameters()):
        h.update(name.encode())
        h.update(p.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


@HOOKS.register_module()
class ParamDigestHook(Hook):
    """Write ``before <sha256>`` and ``after <sha256>`` of the model's parameters to
    ``<work_dir>/param_digest_rank<r>.txt``: a check that every data-parallel rank agrees."""

    priority = "VERY_LOW"

    def before_train(self, runner) -> None:
        self._before = param_digest(runner.model)

    def after_train(self, runner) -> None:
        Path(runner.work_dir, f"param_digest_rank{get_rank()}.txt").write_text(
            f"before {self._before}\nafter {param_digest(runner.model)}\n")


@HOOKS.register_module()
class ClipFractionHook(Hook):
    """Count the training steps whose gradient norm exceeded ``max_norm`` (the config's
    ``optim_wrapper.clip_grad.max_norm``), i.e. the steps gradient clipping changed. The norm is ``train/grad_norm``,
    logged by MMEngine's ``OptimWrapper`` before it clips; ``max_norm=None`` counts nothing. The counts live in the
    message hub's runtime info, which checkpoints save, so a resumed run continues its own counts."""

    priority = "NORMAL"  # before CheckpointHook (VERY_LOW) saves the counts
    KEY = "lossbench_clip"

    def __init__(self, max_norm: float | None) -> None:
        self.max_norm = None if max_norm is None else float(max_norm)

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        if self.max_norm is None:
            return
        hub = runner.message_hub
        counts = dict(hub.get_info(self.KEY) or {"steps": 0, "clipped": 0})
        counts["steps"] += 1
        if "train/grad_norm" in hub.log_scalars and hub.get_scalar("train/grad_norm").current() > self.max_norm:
            counts["clipped"] += 1
        hub.update_info(self.KEY, counts)

    @classmethod
    def summary(cls, runner, max_norm: float | None) -> dict:
        """``{"max_norm", "clipped_fraction", "steps"}`` of the run so far."""
        counts = runner.message_hub.get_info(cls.KEY) or {"steps": 0, "clipped": 0}
        steps = int(counts["steps"])
        frac = counts["clipped"] / steps if steps and max_norm is not None else None
        return {"max_norm": max_norm, "clipped_fraction": None if frac is None else round(frac, 6), "steps": steps}


@HOOKS.register_module()
class ValHistoryHook(Hook):
    """Record every validation of a run: ``<work_dir>/val_history.json``, a list of ``{"iter": N,
    "<metric key>": value, ...}``, rewritten atomically after each one. The validation at N runs after
    the checkpoint of N is saved, so a run resumed from N drops later entries (evaluated again)."""

    priority = "NORMAL"
    FILE = "val_history.json"

    def before_train(self, runner) -> None:
        from lossbench.utils import read_json

        path = Path(runner.work_dir) / self.FILE
        old = read_json(path) if path.is_file() else []
        self.history = [h for h in old if h["iter"] <= runner.iter]

    def after_val_epoch(self, runner, metrics=None) -> None:
        from lossbench.utils import atomic_write_json

        entry = {"iter": runner.iter, **{k: float(v) for k, v in (metrics or {}).items() if isinstance(v, int | float)}}
        self.history = [h for h in getattr(self, "history", []) if h["iter"] != runner.iter] + [entry]
        if get_rank() == 0:
            atomic_write_json(Path(runner.work_dir) / self.FILE, self.history)


@VISBACKENDS.register_module()
class RunDVCLiveVisBackend(DVCLiveVisBackend):
    """MMEngine's DVCLive backend that logs, as ``dvclive/params.yaml``, the run's identity (name,
    family and knobs, prior init, seed, config digest) instead of its whole resolved config, which
    holds the training machine's paths (``lossbench train --print-config`` shows that config)."""

    def __init__(self, save_dir: str, run: str | None = None, **kwargs) -> None:
        super().__init__(save_dir, **kwargs)
        self.run = run

    def _init_env(self):
        # continue the curves when they are there: the engine removes them unless the run resumes
        self._init_kwargs = {**(self._init_kwargs or {}), "resume": Path(self._save_dir).is_dir()}
        super()._init_env()

    @force_init_env
    def add_config(self, config, **kwargs) -> None:
        from lossbench.training.config import config_digest

        head = config.model.bbox_head
        self._dvclive.log_params(self._to_dvc_paramlike({
            "run": self.run, "imbalance": head.get("imbalance"), "prior_prob": head.get("prior_prob"),
            "seed": (config.get("randomness") or {}).get("seed"), "config_digest": config_digest(config)}))
