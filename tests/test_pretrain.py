"""The pretrained backbone: its data never touch a detection set, its recipe is checked, and a
run's backbone holds exactly its weights at iteration 0."""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import numpy as np
import pytest
import yaml

from lossbench import pretrain as P

REPO = Path(__file__).resolve().parents[1]
PARAMS = yaml.safe_load((REPO / "params.yaml").read_text())
TINY = {"seed": 1, "n_train": 8, "n_val": 4, "image_size": 96, "objects": [1, 3], "object_size": [16, 48],
        "distractors": [0, 2]}


def test_pretraining_seed_is_no_detection_seed():
    """Every profile's pretraining images come from a generator seed that no synth detection set of
    params.yaml uses (the sweep's included), and a clash is refused naming the key."""
    pretrained = [n for n, p in PARAMS["profiles"].items() if (p or {}).get("pretrain")]
    assert "synth" in pretrained
    for name in pretrained:
        spec = P.PretrainSpec.from_mapping(PARAMS["profiles"][name]["pretrain"], f"profiles.{name}.pretrain")
        P.check_disjoint(spec, PARAMS, f"profiles.{name}.pretrain")
    clash = P.PretrainSpec.from_mapping({"data": {**TINY, "seed": 0}, "batch_size": 4}, "x.pretrain")
    with pytest.raises(ValueError, match=r"x\.pretrain\.data\.seed = 0 is also profiles\.synth\.data\.seed"):
        P.check_disjoint(clash, PARAMS, "x.pretrain")


def test_no_detection_image_in_the_pretraining_set():
    """Rendered from its own seed, no pretraining image equals a detection image of the same
    generator settings (pixel hashes of 64 + 64 images)."""
    from lossbench.data.synth import SynthParams
    from lossbench.data.synth.render import iter_images

    params = SynthParams(image_size=96, objects=(1, 3), object_size=(16, 48), distractors=(0, 2))
    detection = {hashlib.sha256(r.jpeg).hexdigest()
                 for r in iter_images(params, 0, [(s, i) for s in ("train", "val", "test") for i in range(1, 23)])}
    sets = P.render({**TINY, "n_train": 32, "n_val": 32}, log=lambda s: None)
    images = np.concatenate([sets["train"][0], sets["val"][0]])
    # compare decoded pixels too: re-render the detection images the same way
    det_pixels = P.render({**TINY, "seed": 0, "n_train": 22, "n_val": 22}, log=lambda s: None)
    det = {hashlib.sha256(x.tobytes()).hexdigest() for x in np.concatenate([det_pixels["train"][0],
                                                                           det_pixels["val"][0]])}
    assert len(detection) == 66
    assert not det & {hashlib.sha256(x.tobytes()).hexdigest() for x in images}


def test_the_pretrain_stage_reads_no_detection_data():
    """The DVC stage's inputs are code, configs and params: nothing under data/."""
    stage = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]["pretrain"]
    assert not [d for d in stage["deps"] if str(d).startswith("data")]
    assert "--root" not in stage["cmd"] and "--ann-dir" not in stage["cmd"]


@pytest.mark.parametrize(("spec", "message"), [
    ({"data": TINY, "steps": 0}, r"p\.steps must be >= 1"),
    ({"data": TINY, "stepz": 3}, r"p: unknown keys \['stepz'\]"),
    ({"data": {k: v for k, v in TINY.items() if k != "seed"}}, r"p\.data\.seed is required"),
    ({"data": TINY, "batch_size": 2.5}, r"p\.batch_size must be an integer"),
    ({"data": {**TINY, "n_train": 4}, "batch_size": 8}, r"n_train must be >= batch_size"),
])
def test_bad_spec_names_the_key(spec, message):
    with pytest.raises(ValueError, match=message):
        P.PretrainSpec.from_mapping(spec, "p")


def test_average_precision_hand_worked():
    # class 0: ranking 0.9(+) 0.8(-) 0.7(+) -> precision at the positives 1/1, 2/3 -> AP 5/6
    # class 1: no positive -> NaN; class 2: 0.1(+) ranked last of 3 -> 1/3
    scores = np.array([[0.9, 0.5, 0.3], [0.8, 0.2, 0.2], [0.7, 0.1, 0.1]])
    targets = np.array([[1, 0, 0], [0, 0, 0], [1, 0, 1]], dtype=float)
    ap = P.average_precision(scores, targets)
    assert ap[0] == pytest.approx(5 / 6) and math.isnan(ap[1]) and ap[2] == pytest.approx(1 / 3)


def test_lr_schedule_hand_worked():
    spec = P.PretrainSpec(data=TINY, steps=110, lr=1.0, warmup=10)
    assert P.lr_at(0, spec) == pytest.approx(0.01)
    assert P.lr_at(5, spec) == pytest.approx(0.01 + 0.99 * 0.5)
    assert P.lr_at(10, spec) == pytest.approx(1.0)
    assert P.lr_at(60, spec) == pytest.approx(0.01 + 0.99 * 0.5)  # half-way through the cosine
    assert P.lr_at(110, spec) == pytest.approx(0.01)


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    from mmengine.config import Config

    out = tmp_path_factory.mktemp("pretrain") / "pretrain"
    cfg = Config.fromfile(str(REPO / "configs/synth/retinanet_r18n_fpn_synth.py"))
    spec = P.PretrainSpec(data=TINY, steps=3, batch_size=4, eval_every=2, warmup=1)
    metrics = P.pretrain(spec, cfg.model.to_dict(), out, log=lambda s: None)
    return out, metrics


def test_pretrain_writes_a_half_precision_backbone(pretrained):
    import torch

    out, metrics = pretrained
    assert sorted(p.name for p in out.iterdir()) == ["backbone.pth", "metrics.json"]
    assert json.loads((out / "metrics.json").read_text()) == metrics
    blob = (out / "backbone.pth").read_bytes()
    assert metrics["checkpoint"]["sha256"] == hashlib.sha256(blob).hexdigest()
    state = torch.load(out / "backbone.pth", map_location="cpu")["state_dict"]
    assert all(v.dtype == torch.float16 for v in state.values() if v.is_floating_point())
    assert sum(v.numel() for k, v in state.items() if "running" not in k and "num_batches" not in k) == \
        metrics["backbone_parameters"]
    assert [c["step"] for c in metrics["curve"]] == [2, 3]
    assert not [k for k in state if k.startswith("fc")]  # the classifier layer stays behind


def test_the_same_recipe_on_the_same_machine_gives_the_same_bits(pretrained, tmp_path):
    """Pretraining again with the same spec, model and threads writes the same checkpoint, byte for byte: a clone's
    `make repro` on the machine that pretrained finds the committed backbone reproduced (another CPU may differ)."""
    from mmengine.config import Config

    out, metrics = pretrained
    cfg = Config.fromfile(str(REPO / "configs/synth/retinanet_r18n_fpn_synth.py"))
    spec = P.PretrainSpec(data=TINY, steps=3, batch_size=4, eval_every=2, warmup=1)
    again = P.pretrain(spec, cfg.model.to_dict(), tmp_path / "again", log=lambda s: None)
    assert (tmp_path / "again" / "backbone.pth").read_bytes() == (out / "backbone.pth").read_bytes()
    assert again["checkpoint"]["sha256"] == metrics["checkpoint"]["sha256"]
    assert again["curve"] == metrics["curve"]


def test_a_run_starts_from_the_pretrained_backbone(pretrained):
    """The synth config's model, initialised as the Runner initialises it, holds the checkpoint's
    weights (and BN statistics) in its backbone, its stem and first stage frozen, BN in eval mode."""
    import torch
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules
    from mmengine.config import Config

    import lossbench.models.registry  # noqa: F401

    register_all_modules()
    out, _ = pretrained
    cfg = Config.fromfile(str(REPO / "configs/synth/retinanet_r18n_fpn_synth.py"))
    assert cfg.model.backbone.init_cfg.checkpoint == "runs/synth/pretrain/backbone.pth"
    cfg.model.backbone.init_cfg.checkpoint = str(out / "backbone.pth")
    model = MODELS.build(cfg.model)
    model.init_weights()
    model.train()
    state = torch.load(out / "backbone.pth", map_location="cpu")["state_dict"]
    held = model.backbone.state_dict()
    assert set(held) == set(state)
    for k, v in state.items():
        assert torch.equal(held[k], v.to(held[k].dtype)), k
    frozen = [n for n, p in model.backbone.named_parameters() if not p.requires_grad]
    assert frozen and all(n.startswith(("conv1", "bn1", "layer1")) for n in frozen)
    assert all(not m.training for m in model.backbone.modules() if isinstance(m, torch.nn.BatchNorm2d))
