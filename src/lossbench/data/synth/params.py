"""What decides a generated set: ``SynthParams`` (the pixels and boxes) and ``generate_kwargs``, which reads them and
the run options from a mapping such as a profile's ``data`` in ``params.yaml``."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class SynthParams:
    """Everything that decides the generated pixels and boxes (sizes in px; pairs are ``(min, max)``, inclusive)."""

    image_size: int = 256  # side of the square images
    objects: tuple[int, int] = (1, 8)  # labelled shapes per image, uniform
    object_size: tuple[int, int] | None = None  # longer box side, log-uniform; None: (max(4, S // 16), S // 2)
    distractors: tuple[int, int] = (2, 8)  # unlabelled shapes per image, uniform
    distractor_size: tuple[int, int] | None = None  # longer side of a distractor; None: object_size
    clutter: float = 24.0  # background strokes per 256 x 256 px of image (Poisson mean)
    max_occlusion: float = 0.5  # largest share of a labelled object's pixels later shapes may hide
    jpeg_quality: int = 90

    def resolved(self) -> SynthParams:
        """A copy with the ``None`` defaults filled in and everything checked."""
        s = int(self.image_size)
        osz = self.object_size or (max(4, s // 16), s // 2)
        dsz = self.distractor_size or osz
        p = SynthParams(s, tuple(map(int, self.objects)), tuple(map(int, osz)),
                        tuple(map(int, self.distractors)), tuple(map(int, dsz)),
                        float(self.clutter), float(self.max_occlusion), int(self.jpeg_quality))
        if not 32 <= s <= 4096:
            raise ValueError(f"image_size must be in [32, 4096] px, got {s}")
        for name, (lo, hi), low in (("objects", p.objects, 0), ("distractors", p.distractors, 0),
                                    ("object_size", p.object_size, 4), ("distractor_size", p.distractor_size, 4)):
            if not low <= lo <= hi:
                raise ValueError(f"{name} must satisfy {low} <= MIN <= MAX, got {lo} {hi}")
        for name, (_lo, hi) in (("object_size", p.object_size), ("distractor_size", p.distractor_size)):
            if hi > s:
                raise ValueError(f"{name} MAX ({hi} px) must not exceed image_size ({s} px)")
        if p.objects[1] + p.distractors[1] > 250:
            raise ValueError("at most 250 shapes (objects + distractors) per image")
        if not 0.0 <= p.max_occlusion < 1.0:
            raise ValueError(f"max_occlusion must be in [0, 1), got {p.max_occlusion}")
        if not 1 <= p.jpeg_quality <= 100:
            raise ValueError(f"jpeg_quality must be in [1, 100], got {p.jpeg_quality}")
        return p

    def as_dict(self) -> dict[str, Any]:
        """The fields as JSON values (pairs as lists), as ``stats.json`` records them."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


#: keys of a profile's ``data`` mapping (params.yaml) besides the SynthParams fields.
RUN_KEYS: dict[str, Any] = {"seed": 0, "n_train": 2000, "n_val": 500, "n_test": 500, "workers": 0,
                            "anchor_config": "default", "stats_images": 2000}
_PAIRS = {"objects", "object_size", "distractors", "distractor_size"}


def generate_kwargs(data: dict[str, Any], where: str = "data") -> dict[str, Any]:
    """``generate`` keyword arguments from a mapping such as a profile's ``data``.

    Keys: ``RUN_KEYS`` (``workers: 0`` = one per CPU; ``anchor_config``: ``default`` (or ``None``), ``none`` or a config
    path, which must exist) and the fields of ``SynthParams`` (pairs as 2-lists). An unknown key or a bad value is a
    ``ValueError`` naming ``where`` and the key.
    """
    from lossbench.data.anchor_stats import find_model_config

    fields = set(SynthParams.__dataclass_fields__)
    unknown = set(data) - fields - set(RUN_KEYS)
    if unknown:
        raise ValueError(f"{where}: unknown keys {sorted(unknown)}; allowed {sorted(fields | set(RUN_KEYS))}")
    opts = {**RUN_KEYS, **{k: v for k, v in data.items() if k in RUN_KEYS}}
    try:
        params = SynthParams(**{k: (tuple(v) if k in _PAIRS and v is not None else v)
                                for k, v in data.items() if k in fields}).resolved()
    except (TypeError, ValueError) as e:
        raise ValueError(f"{where}: {e}") from e
    a = opts["anchor_config"]
    anchor = None if a is not None and str(a).lower() == "none" else find_model_config(
        None if a in (None, "default") else a)
    return {**{k: int(opts[k]) for k in ("seed", "n_train", "n_val", "n_test", "stats_images")}, "params": params,
            "workers": int(opts["workers"]) or os.cpu_count() or 1, "anchor_config": anchor}
