"""Shared fixtures: a small generated and prepared detection set."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def synth_prepared(tmp_path_factory) -> dict[str, Path]:
    """A tiny `synth` set (128 px, 16 train / 4 val / 8 test images), prepared.

    Returns ``{'root': images root, 'ann_dir': prepared JSON folder}``.
    """
    from lossbench.data.prepare import prepare
    from lossbench.data.synth import SynthParams, generate

    base = tmp_path_factory.mktemp("synth")
    root, ann_dir = base / "raw", base / "prepared"
    generate(root, seed=0, n_train=16, n_val=4, n_test=8,
             params=SynthParams(image_size=128, objects=(2, 5), object_size=(16, 56)),
             log=lambda *a, **k: None)
    prepare("synth", root, ann_dir, log=lambda *a, **k: None)
    return {"root": root, "ann_dir": ann_dir}
