"""Every profile's config is built and validated for each family, even where its data is absent."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from mmdet.registry import MODELS
from mmdet.utils import register_all_modules

import lossbench.models.registry  # noqa: F401
from lossbench.data.classes import CLASSES
from lossbench.families import FAMILIES
from lossbench.profiles import ProfileError, load_params, load_profile
from lossbench.training.config import load_config

REPO = Path(__file__).resolve().parents[1]
PARAMS = REPO / "params.yaml"
PROFILES = sorted(load_params(PARAMS)["profiles"])


def fake_prepared(tmp_path: Path, dataset: str) -> Path:
    """Prepared JSONs with the dataset's categories and no images (enough to resolve a config)."""
    cats = [{"id": i + 1, "name": n} for i, n in enumerate(CLASSES[dataset])]
    for split in ("train", "val", "test"):
        (tmp_path / f"{split}.json").write_text(
            json.dumps({"images": [], "annotations": [], "categories": cats}))
    return tmp_path


def test_the_study_has_the_three_scales():
    assert {"synth", "smoke", "voc", "coco"} <= set(PROFILES)


@pytest.mark.parametrize("name", PROFILES)
@pytest.mark.parametrize("family", ["focal", "ohem", "sse"])
def test_profile_configs_build(name, family, tmp_path):
    register_all_modules()
    prof = load_profile(PARAMS, name)
    ann_dir = fake_prepared(tmp_path, prof.dataset)
    cfg = load_config(prof.config, data_root=tmp_path, ann_dir=ann_dir, seed=0,
                      imbalance={"type": family, **FAMILIES[family].defaults})
    head = cfg.model.bbox_head
    assert head.imbalance["type"] == family
    assert head.num_classes == len(CLASSES[prof.dataset])
    ds = cfg.train_dataloader.dataset
    while ds.get("type") != "CocoDataset":
        ds = ds.dataset
    assert ds.ann_file == str(ann_dir.resolve() / "train.json")
    assert tuple(ds.metainfo["classes"]) == CLASSES[prof.dataset]
    for split in ("val", "test"):  # each split is scored on its own annotations
        ds = cfg[f"{split}_dataloader"].dataset
        assert ds.ann_file == str(ann_dir.resolve() / f"{split}.json")
        evs = cfg[f"{split}_evaluator"]
        evs = evs if isinstance(evs, list) else [evs]
        assert all(e["ann_file"] == ds.ann_file for e in evs if e["type"] == "CocoMetric")
        assert any(e["type"] == "VOCMetric" for e in evs)
    if name in ("voc", "coco"):
        assert any(e["type"] == "CocoMetric" for e in cfg.test_evaluator)
    if name == "voc":  # VOC07 test also with the 11-point metric
        assert any(e.get("eval_mode") == "11points" for e in cfg.test_evaluator)
    model = MODELS.build(cfg.model)
    assert type(model.bbox_head).__name__ == "ImbalanceRetinaHead"
    expected = {"focal": 0, "ohem": 1, "sse": 1}[family] + head.num_classes
    assert model.bbox_head.retina_cls.out_channels == 9 * expected
    if name in ("voc", "coco"):  # the paper's architecture
        assert cfg.model.backbone.depth == 50 and head.stacked_convs == 4
        assert cfg.model.backbone.init_cfg.checkpoint == "torchvision://resnet50"
        # GPU profiles: bf16 mixed precision, per-GPU batch 16 = the paper's total batch
        # of 16 on one GPU, lr given for 16 and scaled by the total batch
        assert cfg.optim_wrapper.type == "AmpOptimWrapper"
        assert cfg.optim_wrapper.dtype == "bfloat16"
        assert cfg.train_dataloader.batch_size == 16
        assert cfg.auto_scale_lr == {"enable": True, "base_batch_size": 16}
    elif name.startswith("sweep"):
        # the sweep's points train one config, images kept at their canvas size (no rescaling, at
        # train and test time), with the synth profile's lr (not rescaled with the batch)
        for split in ("train", "val", "test"):
            resize = [t for t in cfg[f"{split}_dataloader"].dataset.pipeline if t["type"] == "Resize"]
            assert resize == [{"type": "Resize", "scale_factor": 1.0, "keep_ratio": True}]
        assert cfg.train_dataloader.batch_size == 4 and cfg.auto_scale_lr.enable is False
    else:
        assert cfg.optim_wrapper.type == "OptimWrapper"
        assert cfg.auto_scale_lr == {"enable": True, "base_batch_size": 8}


def test_the_sweep_points_differ_only_in_canvas():
    """Positive exposure held fixed: one config (batch, network, lr, schedule) for every point and
    the same data but for the canvas, a fixed count of labelled objects per image; the canvas areas
    span >= 10x (the share of positive anchors follows, measured in each point's stats.json), each
    canvas a multiple of the padding (32 px), so no anchor lies over padding; no labelled object may
    be occluded, so the small canvas is not the more occluded one."""
    points = [load_profile(PARAMS, p) for p in load_params(PARAMS)["sweep"]["profiles"]]
    assert len(points) >= 3
    assert len({p.config for p in points}) == 1
    data = [{k: v for k, v in p.data.items() if k != "image_size"} for p in points]
    assert all(d == data[0] for d in data)
    lo, hi = data[0]["objects"]
    assert lo == hi  # the same scene in every image
    assert data[0]["max_occlusion"] == 0.0
    sizes = [p.data["image_size"] for p in points]
    assert all(s % 32 == 0 for s in sizes)
    assert (max(sizes) / min(sizes)) ** 2 >= 10


def test_amp_options():
    from lossbench.stages.train import amp_options

    assert amp_options("none") == {"optim_wrapper.type": "OptimWrapper"}
    assert amp_options("bf16")["optim_wrapper.dtype"] == "bfloat16"
    assert amp_options("fp16") == {"optim_wrapper.type": "AmpOptimWrapper",
                                   "optim_wrapper.dtype": "float16"}


def test_a_run_is_its_config_plus_knob_and_seed(tmp_path):
    """The smoke config is the synth one cut short: same model (but a backbone from scratch),
    lr and pipeline; the schedule and batch are its own, written in the config, not set at run time."""
    from mmengine.config import Config

    synth = Config.fromfile(str(load_profile(PARAMS, "synth").config))
    smoke = Config.fromfile(str(load_profile(PARAMS, "smoke").config))
    assert synth.model.backbone.init_cfg == {"type": "Pretrained", "checkpoint": "runs/synth/pretrain/backbone.pth"}
    assert (synth.model.backbone.frozen_stages, synth.model.backbone.norm_eval) == (1, True)
    assert (smoke.model.backbone.init_cfg, smoke.model.backbone.frozen_stages) == (None, -1)
    for cfg in (synth, smoke):
        cfg.model.backbone = {k: v for k, v in cfg.model.backbone.items()
                              if k not in ("init_cfg", "frozen_stages", "norm_eval")}
    assert smoke.model == synth.model and smoke.optim_wrapper == synth.optim_wrapper
    assert smoke.train_pipeline == synth.train_pipeline
    assert (synth.train_cfg.max_iters, synth.train_dataloader.batch_size) == (2400, 8)
    assert (smoke.train_cfg.max_iters, smoke.train_dataloader.batch_size) == (4, 2)
    # every scheduler ends where the schedule does
    for cfg in (synth, smoke):
        assert max(s["end"] for s in cfg.param_scheduler) == cfg.train_cfg.max_iters


def test_mixed_precision_on_cpu_is_a_clear_error(synth_prepared, tmp_path):
    import subprocess
    import sys

    p = subprocess.run([sys.executable, "-m", "lossbench", "train", "--profile", "smoke",
                        "--family", "focal", "--seed", "0", "--amp", "bf16",
                        "--data-root", str(synth_prepared["root"]),
                        "--ann-dir", str(synth_prepared["ann_dir"]), "--out", str(tmp_path / "r")],
                       capture_output=True, text=True, cwd=PARAMS.parent)
    assert p.returncode == 2 and "needs a CUDA GPU" in p.stderr
    assert not (tmp_path / "r").exists()


def test_unknown_profile_and_bad_keys_are_named(tmp_path):
    with pytest.raises(ProfileError, match=r"unknown profile 'vooc'; expected one of"):
        load_profile(PARAMS, "vooc")
    bad = tmp_path / "params.yaml"
    bad.write_text("profiles:\n  x:\n    dataset: synth\n    config: nowhere.py\n")
    with pytest.raises(ProfileError, match=r"profiles.x.config must name an existing config file, "
                                           r"got 'nowhere.py'"):
        load_profile(bad, "x")
    bad.write_text("profiles:\n  x:\n    dataset: synth\n    train: {batch_size: 4}\n")
    with pytest.raises(ProfileError, match=r"profiles.x has unknown keys \['train'\]"):
        load_profile(bad, "x")
    bad.write_text("profiles:\n  x:\n    dataset: imagenet\n")
    with pytest.raises(ProfileError, match=r"profiles.x.dataset must be one of"):
        load_profile(bad, "x")


def test_cli_dataset_must_agree_with_the_profile():
    from lossbench.profiles import resolve_dataset

    prof, where = resolve_dataset(PARAMS, "voc", "voc0712")
    assert prof.dataset == "voc0712" and where.endswith("profiles.voc")
    with pytest.raises(ValueError, match=r"--dataset coco2017 contradicts .*profiles.voc.dataset = voc0712"):
        resolve_dataset(PARAMS, "voc", "coco2017")
