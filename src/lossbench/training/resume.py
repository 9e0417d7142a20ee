"""When a run continues from a checkpoint, and from which one.

A run's work dir holds MMEngine's checkpoints and ``fingerprint.txt``, a digest of what determines
the result: the resolved config without paths and logging, the contents of the annotation files and
the training code (:func:`code_files`); not where the repository sits, so a moved run resumes. Same
fingerprint: the run resumes from its newest *complete* checkpoint (a finished run only evaluates);
anything else: the work dir is emptied and the run starts over.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
import shutil
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lossbench import codedeps
from lossbench.utils import atomic_write_text

#: config keys that hold where things are, or how a run logs, not what it computes
PATH_KEYS = frozenset({"data_root", "ann_file", "work_dir", "out_file"})
IGNORED_KEYS = ("resume", "load_from", "launcher", "visualizer", "default_hooks",
                "custom_hooks", "log_processor", "log_level", "experiment_name")
CHECKPOINT = re.compile(r"^(iter|epoch)_(\d+)\.pth$")


def code_files(root: Path = codedeps.PACKAGE) -> list[Path]:
    """The training code: every module of the package ``root`` that ``lossbench train`` imports,
    transitively (:func:`lossbench.codedeps.files`; the train stages in ``dvc.yaml`` depend on them)."""
    return codedeps.files([codedeps.TRAIN_MODULE], root)


def code_digest(root: Path = codedeps.PACKAGE) -> str:
    """Digest of the training code (``code_files``): a checkpoint of other code is never resumed."""
    h = hashlib.sha256()
    for f in code_files(root):
        h.update(f.relative_to(root.parent).as_posix().encode() + b"\0" + f.read_bytes())
    return h.hexdigest()[:16]


def _strip(x: Any, found: set[str]) -> Any:
    """``x`` without path-valued keys; the annotation files they name, and the weights files an
    initialiser loads (``init_cfg.checkpoint``, e.g. the pretrained backbone), are collected in ``found``."""
    if isinstance(x, dict):
        found.update(v for k, v in x.items()
                     if k in PATH_KEYS and isinstance(v, str) and v.endswith(".json") and Path(v).is_file())
        found.update(v for k, v in x.items() if k == "checkpoint" and isinstance(v, str) and Path(v).is_file())
        return {k: _strip(v, found) for k, v in x.items() if k not in PATH_KEYS}
    if isinstance(x, (list, tuple)):
        return [_strip(v, found) for v in x]
    return x


def fingerprint(cfg) -> str:
    """Digest of what training computes: the config without paths or logging, the contents
    of the annotation and weights files it names (by file name, not location) and the training code."""
    found: set[str] = set()
    d = _strip({k: v for k, v in cfg.to_dict().items() if k not in IGNORED_KEYS}, found)
    d["__data__"] = sorted((Path(f).name, hashlib.sha256(Path(f).read_bytes()).hexdigest()) for f in found)
    d["__code__"] = code_digest()
    return hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:16]


def is_complete(ckpt: Path) -> bool:
    """Whether a checkpoint file is whole: ``torch.save`` writes a zip archive whose members carry
    CRC-32s, so a truncated or damaged file fails here without being unpickled."""
    try:
        with zipfile.ZipFile(ckpt) as z:
            return z.testzip() is None
    except (zipfile.BadZipFile, OSError, EOFError, ValueError):
        return False


def resume_from(work_dir: Path, digest: str, log: Callable[[str], None] = print) -> Path | None:
    """The newest complete checkpoint (``iter_N.pth`` / ``epoch_N.pth``, largest N) of the run ``digest`` in
    ``work_dir``, or None."""
    marker = work_dir / "fingerprint.txt"
    if not (marker.is_file() and marker.read_text().strip() == digest):
        return None
    found = [p for p in work_dir.glob("*.pth") if CHECKPOINT.match(p.name)]
    for ckpt in sorted(found, key=lambda p: int(CHECKPOINT.match(p.name).group(2)), reverse=True):
        if is_complete(ckpt):
            return ckpt
        log(f"{ckpt} is incomplete or corrupt: not resumed from")
    return None


def prepare_work_dir(work_dir: Path, digest: str, main_process: bool = True,
                     log: Callable[[str], None] = print) -> Path | None:
    """Keep a resumable run's folder; empty any other. Returns the checkpoint to resume from.
    Only the main process changes the folder (the others decide the same: nothing to resume)."""
    ckpt = resume_from(work_dir, digest, log)
    if ckpt is not None or not main_process:
        return ckpt
    if work_dir.exists():
        shutil.rmtree(work_dir)
    work_dir.mkdir(parents=True)
    atomic_write_text(work_dir / "fingerprint.txt", digest + "\n")
    return None


def truncate_curves(dvclive_dir: Path, last_step: int) -> None:
    """Keep the curve rows up to and including ``last_step`` (the resumed checkpoint's iteration);
    rows logged after it are logged again. A torn row (cut short by a crash) is dropped."""
    for tsv in sorted(dvclive_dir.rglob("*.tsv")) if dvclive_dir.exists() else []:
        with open(tsv, newline="", encoding="utf-8") as f:
            rows = list(csv.reader(f, delimiter="\t"))
        if not rows or "step" not in rows[0]:
            continue
        i, width = rows[0].index("step"), len(rows[0])
        kept = [rows[0]]
        for r in rows[1:]:
            try:
                if len(r) == width and int(float(r[i])) <= last_step:
                    kept.append(r)
            except ValueError:
                continue
        buf = io.StringIO()
        csv.writer(buf, delimiter="\t", lineterminator="\n").writerows(kept)
        atomic_write_text(tsv, buf.getvalue())
