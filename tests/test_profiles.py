"""Every profile's configs are built and validated, even where its data is absent."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from mmdet.registry import MODELS
from mmdet.utils import register_all_modules

import lossbench.models.registry  # noqa: F401
from lossbench.config import load_config
from lossbench.data.classes import CLASSES
from lossbench.profiles import ProfileError, amp_options, load_params, load_profile

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
    cfg = load_config(prof.config_for(family), data_root=tmp_path, ann_dir=ann_dir, seed=0,
                      max_iters=prof.train.get("max_iters"),
                      options=prof.train_options() or None)
    head = cfg.model.bbox_head
    assert head.imbalance["type"] == family
    assert head.num_classes == len(CLASSES[prof.dataset])
    ds = cfg.train_dataloader.dataset
    while ds.get("type") != "CocoDataset":
        ds = ds.dataset
    assert ds.ann_file == str(ann_dir.resolve() / "train.json")
    assert tuple(ds.metainfo["classes"]) == CLASSES[prof.dataset]
    coco = [e for e in cfg.test_evaluator if e["type"] == "CocoMetric"][0]
    assert coco["ann_file"] == str(ann_dir.resolve() / "test.json")
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
    else:
        assert cfg.optim_wrapper.type == "OptimWrapper"
        assert cfg.auto_scale_lr == {"enable": True, "base_batch_size": 8}


def test_amp_options():
    assert amp_options("none") == {} and amp_options(False) == {}
    assert amp_options("bf16")["optim_wrapper.dtype"] == "bfloat16"
    assert amp_options(True) == {"optim_wrapper.type": "AmpOptimWrapper",
                                 "optim_wrapper.dtype": "float16"}
    with pytest.raises(ValueError, match="amp must be"):
        amp_options("fp8")


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
    bad.write_text("profiles:\n  x:\n    dataset: synth\n    configs: {focal: a, ohem: b, sse: c}\n"
                   "    train: {batch_size: 0}\n")
    with pytest.raises(ProfileError, match=r"profiles.x.train.batch_size must be a positive int, got 0"):
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
