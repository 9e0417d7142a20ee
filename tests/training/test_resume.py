"""Which checkpoint a run resumes from (lossbench.training.resume), on folders of fabricated
checkpoints, and that a run's fingerprint follows its seed."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import torch

from lossbench.training.resume import fingerprint, prepare_work_dir, resume_from

REPO = Path(__file__).resolve().parents[2]
SMOKE = REPO / "configs" / "smoke" / "retinanet_r18n_fpn_smoke.py"
DIGEST = "0123456789abcdef"


def _checkpoint(path: Path, n: int) -> None:
    """A small checkpoint as ``torch.save`` writes one (a zip archive)."""
    torch.save({"meta": {"iter": n}, "state_dict": {"w": torch.arange(64.0) * n}}, path)


def _damage(path: Path, how: str) -> None:
    data = path.read_bytes()
    if how == "truncated":  # a write cut short
        path.write_bytes(data[: len(data) // 2])
    elif how == "empty":
        path.write_bytes(b"")
    else:  # "tail zeroed": the archive's end overwritten
        path.write_bytes(data[: len(data) // 2] + bytes(len(data) - len(data) // 2))


def _work_dir(base: Path, names: list[str], digest: str = DIGEST) -> Path:
    """``base/work`` with ``fingerprint.txt``, the checkpoints ``names`` written in a random order
    (so neither the order of creation nor the modification times tell the newest) and files that
    are not checkpoints."""
    d = base / "work"
    d.mkdir()
    (d / "fingerprint.txt").write_text(digest + "\n")
    for name in random.Random(len(names)).sample(names, len(names)):
        _checkpoint(d / name, int(name.split("_")[1].split(".")[0]))
    _checkpoint(d / "best_iter_99999.pth", 99999)  # not a resume point
    (d / "iter_99999.pth.tmp").write_bytes(b"")
    (d / "last_checkpoint").write_text(str(d / names[0]))
    return d


@pytest.mark.parametrize("keep", [1, 3, 10])
@pytest.mark.parametrize("damage", ["truncated", "empty", "tail zeroed"])
def test_the_newest_complete_checkpoint_is_chosen(tmp_path, keep, damage):
    """iter_100 ... iter_<100 keep>: the largest number wins (iter_1000 > iter_900 although it
    sorts first as text); when it is damaged, the one before it, with a line naming the damaged
    file; none when the only one is damaged."""
    iters = [100 * k for k in range(1, keep + 1)]
    d = _work_dir(tmp_path, [f"iter_{n}.pth" for n in iters])
    logs: list[str] = []
    assert resume_from(d, DIGEST, log=logs.append) == d / f"iter_{iters[-1]}.pth"
    assert logs == []
    if keep >= 3:  # a damaged older one is never reached
        _damage(d / f"iter_{iters[0]}.pth", damage)
        assert resume_from(d, DIGEST, log=logs.append) == d / f"iter_{iters[-1]}.pth"
        assert logs == []
    newest = d / f"iter_{iters[-1]}.pth"
    _damage(newest, damage)
    expected = d / f"iter_{iters[-2]}.pth" if keep > 1 else None
    assert resume_from(d, DIGEST, log=logs.append) == expected
    assert logs == [f"{newest} is incomplete or corrupt: not resumed from"]
    before = sorted(p.name for p in d.iterdir())
    assert prepare_work_dir(d, DIGEST, log=logs.append) == expected
    if expected is not None:  # a resumable folder is kept as it is
        assert sorted(p.name for p in d.iterdir()) == before
    else:  # nothing to resume: the folder starts over
        assert [p.name for p in d.iterdir()] == ["fingerprint.txt"]
        assert (d / "fingerprint.txt").read_text().strip() == DIGEST


def test_every_checkpoint_damaged_and_epochs(tmp_path):
    d = _work_dir(tmp_path, [f"epoch_{n}.pth" for n in (1, 2, 9, 10, 12)])
    assert resume_from(d, DIGEST, log=lambda s: None) == d / "epoch_12.pth"
    for n in (12, 10, 9, 2, 1):
        _damage(d / f"epoch_{n}.pth", "truncated")
    logs: list[str] = []
    assert resume_from(d, DIGEST, log=logs.append) is None
    assert [Path(s.split()[0]).name for s in logs] == ["epoch_12.pth", "epoch_10.pth", "epoch_9.pth",
                                                       "epoch_2.pth", "epoch_1.pth"]


@pytest.mark.parametrize("marker", ["other digest", "missing"])
def test_another_fingerprint_is_not_resumed_and_the_folder_starts_over(tmp_path, marker):
    d = _work_dir(tmp_path, ["iter_2.pth", "iter_4.pth"], digest="fedcba9876543210")
    if marker == "missing":
        (d / "fingerprint.txt").unlink()
    assert resume_from(d, DIGEST, log=lambda s: None) is None
    # another process than the main one decides the same and leaves the folder to the main one
    assert prepare_work_dir(d, DIGEST, main_process=False, log=lambda s: None) is None
    assert (d / "iter_4.pth").is_file()
    assert prepare_work_dir(d, DIGEST, log=lambda s: None) is None
    assert [p.name for p in d.iterdir()] == ["fingerprint.txt"]
    assert (d / "fingerprint.txt").read_text().strip() == DIGEST


def test_the_fingerprint_follows_the_seed(synth_prepared, tmp_path):
    """A manual rerun with another --seed into the same work dir must not resume the other
    seed's checkpoint: two configs that differ only in their seed have different digests."""
    from lossbench.training.config import load_config

    def config(seed):
        return load_config(SMOKE, data_root=synth_prepared["root"], ann_dir=synth_prepared["ann_dir"],
                           seed=seed, work_dir=tmp_path / "work")

    cfg0, cfg1 = config(0), config(1)
    d0, d1 = cfg0.to_dict(), cfg1.to_dict()
    assert {k for k in d0.keys() | d1.keys() if d0.get(k) != d1.get(k)} == {"randomness"}  # only the seed
    assert fingerprint(cfg0) == fingerprint(config(0))  # and the digest is stable
    assert fingerprint(cfg0) != fingerprint(cfg1)

    work = tmp_path / "work"
    work.mkdir()
    (work / "fingerprint.txt").write_text(fingerprint(cfg0) + "\n")
    _checkpoint(work / "iter_4.pth", 4)
    assert prepare_work_dir(work, fingerprint(cfg0), log=lambda s: None) == work / "iter_4.pth"  # seed 0 resumes
    assert prepare_work_dir(work, fingerprint(cfg1), log=lambda s: None) is None  # seed 1 starts over
    assert [p.name for p in work.iterdir()] == ["fingerprint.txt"]
    assert (work / "fingerprint.txt").read_text().strip() == fingerprint(cfg1)


def test_the_fingerprint_follows_the_pretrained_weights(synth_prepared, tmp_path):
    """A run initialised from other pretrained weights (same path, other bytes) does not resume:
    the fingerprint hashes the file the backbone's init_cfg loads, not only its name."""
    from lossbench.training.config import load_config

    weights = tmp_path / "backbone.pth"
    cfg = load_config(SMOKE, data_root=synth_prepared["root"], ann_dir=synth_prepared["ann_dir"], seed=0,
                      work_dir=tmp_path / "work")
    cfg.model.backbone.init_cfg = dict(type="Pretrained", checkpoint=str(weights))
    weights.write_bytes(b"one")
    first = fingerprint(cfg)
    assert fingerprint(cfg) == first
    weights.write_bytes(b"two")
    assert fingerprint(cfg) != first
