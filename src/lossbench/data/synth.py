"""A generated detection set whose foreground/background ratio is a knob.

Each image is a textured, cluttered background with ``objects`` labelled
shapes of 8 classes (``lossbench.data.classes.SYNTH_CLASSES``) and
``distractors`` unlabelled shapes drawn among them. The classes are a shape in
a hue family; two kinds of pairs are confusable on purpose:

- by colour: ``red_disc`` / ``orange_disc`` (hues 25 deg apart, +-5 deg jitter);
- by shape: ``red_disc`` / ``red_ring`` and ``blue_square`` / ``blue_diamond``
  (the same square, rotated by 0 +- 12 deg or 45 +- 12 deg).

Distractors are the hard negatives: a class shape in a colour no class has
(a blue disc, a red square), a class colour on a shape no class has (a red
ellipse, an orange bar), or neither (grey pentagons). Shapes are drawn in a
random order, so later ones occlude earlier ones; a placement is only accepted
if every labelled object drawn before keeps at least ``1 - max_occlusion`` of
its pixels visible (counted exactly on a label map; an object that finds no such
place in 90 tries is dropped and counted). Object size (the longer side of its
box, px) is log-uniform in ``object_size``; the count per image is uniform in
``objects``. Images are square, ``image_size`` px.

Determinism: image ``i`` of split ``s`` is drawn from its own
``numpy.random.Generator`` seeded by ``(seed, s, i)``, and the texture and
noise banks from ``(seed,)``, so the output is byte-identical for a seed
whatever the number of worker processes, and a split's images do not change
when another split's size changes (JPEG bytes assume the same Pillow/libjpeg).

Layout written under ``out``::

    VOCdevkit/VOCsynth/JPEGImages/{split}_{i:06d}.jpg    (the only copy of the pixels)
    VOCdevkit/VOCsynth/Annotations/{split}_{i:06d}.xml   (VOC, 1-based inclusive corners)
    VOCdevkit/VOCsynth/ImageSets/Main/{train,val,test,trainval}.txt
    annotations/{train,val,test}.json                    (COCO; file_name relative to out)
    stats.json                                           (see ``dataset_statistics``)

Box conventions: a box covers pixel columns ``x0 .. x1 - 1`` and rows
``y0 .. y1 - 1`` of the object's drawn pixels (the full, amodal extent, even
where occluded). COCO ``bbox = [x0, y0, x1 - x0, y1 - y0]``; VOC
``xmin = x0 + 1, ymin = y0 + 1, xmax = x1, ymax = y1``. So
``coco = [xmin - 1, ymin - 1, xmax - xmin + 1, ymax - ymin + 1]``, the usual
VOC -> COCO rule (``lossbench.data.prepare`` applies it to real VOC too).
"""

from __future__ import annotations

import colorsys
import io
import math
import multiprocessing
import os
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
from PIL import Image, ImageChops, ImageDraw

from lossbench.data.classes import SYNTH_CLASSES
from lossbench.utils import atomic_path, atomic_write_json

SPLITS: tuple[str, ...] = ("train", "val", "test")
_SPLIT_CODE = {"train": 1, "val": 2, "test": 3}
VOC_FOLDER = "VOCsynth"

# Hue families: centre hue in [0, 1) (0 = red); None = grey (saturation < 0.15).
HUES: dict[str, float | None] = {
    "red": 0.0, "orange": 0.07, "yellow": 0.15, "green": 0.33, "cyan": 0.50,
    "blue": 0.62, "purple": 0.76, "magenta": 0.88, "grey": None,
}
HUE_JITTER = 0.014  # +- 5 deg: red and orange stay 25 +- 10 deg apart

#: (class name, shape kind, hue family), index k -> COCO category k + 1.
CLASS_SPECS: tuple[tuple[str, str, str], ...] = (
    ("red_disc", "disc", "red"),
    ("orange_disc", "disc", "orange"),
    ("red_ring", "ring", "red"),
    ("blue_square", "square", "blue"),
    ("blue_diamond", "diamond", "blue"),
    ("green_triangle", "triangle", "green"),
    ("yellow_star", "star", "yellow"),
    ("purple_cross", "cross", "purple"),
)
assert tuple(c[0] for c in CLASS_SPECS) == SYNTH_CLASSES
_CLASS_COMBOS = {(kind, hue) for _, kind, hue in CLASS_SPECS}
CLASS_KINDS: tuple[str, ...] = tuple(sorted({kind for _, kind, _ in CLASS_SPECS}))
#: shapes no class has; drawn only as distractors.
DISTRACTOR_KINDS: tuple[str, ...] = ("ellipse", "bar", "pentagon", "semicircle", "chevron")


@dataclass(frozen=True)
class SynthParams:
    """Everything that decides the generated pixels and boxes.

    Attributes:
        image_size: side of the square images, px.
        objects: (min, max) labelled objects per image, inclusive, uniform.
        object_size: (min, max) longer box side of an object, px, log-uniform;
            ``None`` -> ``(image_size // 16, image_size // 2)``.
        distractors: (min, max) unlabelled shapes per image, inclusive.
        distractor_size: (min, max) longer side of a distractor, px;
            ``None`` -> the object size range.
        clutter: background strokes per 256 x 256 px of image (Poisson mean).
        max_occlusion: the largest share of a labelled object's pixels that
            shapes drawn later may hide (0 = labelled objects are never hidden).
        jpeg_quality: JPEG quality of the written images.
    """

    image_size: int = 256
    objects: tuple[int, int] = (1, 8)
    object_size: tuple[int, int] | None = None
    distractors: tuple[int, int] = (2, 8)
    distractor_size: tuple[int, int] | None = None
    clutter: float = 24.0
    max_occlusion: float = 0.5
    jpeg_quality: int = 90

    def resolved(self) -> "SynthParams":
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
                                    ("object_size", p.object_size, 4),
                                    ("distractor_size", p.distractor_size, 4)):
            if not low <= lo <= hi:
                raise ValueError(f"{name} must satisfy {low} <= MIN <= MAX, got {lo} {hi}")
        for name, (lo, hi) in (("object_size", p.object_size), ("distractor_size", p.distractor_size)):
            if hi > s:
                raise ValueError(f"{name} MAX ({hi} px) must not exceed image_size ({s} px)")
        if p.objects[1] + p.distractors[1] > 250:
            raise ValueError("at most 250 shapes (objects + distractors) per image")
        if not 0.0 <= p.max_occlusion < 1.0:
            raise ValueError(f"max_occlusion must be in [0, 1), got {p.max_occlusion}")
        if not 1 <= p.jpeg_quality <= 100:
            raise ValueError(f"jpeg_quality must be in [1, 100], got {p.jpeg_quality}")
        return p


# ----------------------------------------------------------------------------
# Per-dataset banks (deterministic in the seed)
# ----------------------------------------------------------------------------

@dataclass
class _Banks:
    """Textures and noise shared by all images of one seed (all RGB, (2S, 2S)).

    colours: smooth colour fields (bicubic up-sampled 3x3..6x6 random grids,
        partly desaturated); an image's background starts as a crop of one.
    textures: grey textures already mapped to ``255 * (1 - c + c * t)`` for a
        contrast ``c`` in {0.25, 0.45, 0.65}; an image multiplies a crop in.
    lights: smooth, slightly tinted illumination fields in about [165, 255];
        the finished image is multiplied by a crop of one (/255).
    noise: per-channel Gaussian noise (sigma 4) + 16; an image adds a crop, - 16.
    """

    colours: list[Image.Image]
    textures: list[Image.Image]
    lights: list[Image.Image]
    noise: Image.Image


def _value_noise(rng: np.random.Generator, n: int, octaves: Sequence[int]) -> np.ndarray:
    """Multi-octave value noise in [0, 1], shape (n, n)."""
    acc = np.zeros((n, n), np.float32)
    total = 0.0
    for k, g in enumerate(octaves):
        grid = rng.random((g, g)).astype(np.float32)
        up = np.asarray(Image.fromarray(grid, mode="F").resize((n, n), Image.BICUBIC))
        w = 0.6 ** k
        acc += w * up
        total += w
    acc /= total
    acc -= acc.min()
    return acc / max(float(acc.max()), 1e-6)


def _make_banks(seed: int, size: int) -> _Banks:
    """Build the texture and noise banks for images of ``size`` px."""
    rng = np.random.default_rng([seed, 0xBA4C])
    n = 2 * size
    yy, xx = np.mgrid[0:n, 0:n].astype(np.float32)
    textures = []
    for kind in range(8):
        if kind % 4 == 0:  # cloudy value noise
            t = _value_noise(rng, n, (4, 8, 16, 32, 64))
        elif kind % 4 == 1:  # noisy stripes at a random angle and period
            a = rng.uniform(0, math.pi)
            period = rng.uniform(6, 24) * size / 256
            t = 0.5 + 0.5 * np.sin(2 * np.pi * (xx * math.cos(a) + yy * math.sin(a)) / period)
            t = 0.7 * t + 0.3 * _value_noise(rng, n, (16, 64))
        elif kind % 4 == 2:  # tiles / weave
            p1, p2 = rng.uniform(8, 32, 2) * size / 256
            t = 0.5 + 0.25 * (np.sin(2 * np.pi * xx / p1) + np.sin(2 * np.pi * yy / p2))
            t = 0.6 * t + 0.4 * _value_noise(rng, n, (8, 32, 128))
        else:  # speckle
            t = 0.5 * _value_noise(rng, n, (32, 128)) + 0.5 * rng.random((n, n), dtype=np.float32)
        for c in (0.25, 0.45, 0.65):
            f = np.clip(255 * (1 - c + c * t), 0, 255).astype(np.uint8)
            textures.append(Image.fromarray(f, "L").convert("RGB"))
    colours = []
    for _ in range(32):
        g = int(rng.integers(3, 7))
        grid = rng.integers(0, 256, (g, g, 3)).astype(np.float32)
        mean = grid.mean(2, keepdims=True)
        grid = np.clip(mean + (grid - mean) * rng.uniform(0.25, 0.9), 0, 255).astype(np.uint8)
        colours.append(Image.fromarray(grid, "RGB").resize((n, n), Image.BICUBIC))
    lights = []
    for _ in range(8):
        light = rng.integers(0, 256, (3, 3, 1)) * 0.3 + rng.integers(0, 256, (1, 1, 3)) * 0.05 + 165
        light = Image.fromarray(np.clip(light, 0, 255).astype(np.uint8), "RGB")
        lights.append(light.resize((n, n), Image.BICUBIC))
    noise = np.clip(rng.normal(16, 4, (n, n, 3)), 0, 255).astype(np.uint8)
    return _Banks(colours, textures, lights, Image.fromarray(noise, "RGB"))


# ----------------------------------------------------------------------------
# Shapes
# ----------------------------------------------------------------------------

Vertices = list[tuple[float, float]]


def _regular(k: int, phase: float = -90.0) -> Vertices:
    """Vertices of a regular k-gon of radius 1 (y down), first at ``phase`` deg."""
    return [(math.cos(math.radians(phase + 360.0 * i / k)), math.sin(math.radians(phase + 360.0 * i / k)))
            for i in range(k)]


_SQUARE: Vertices = [(-1, -1), (1, -1), (1, 1), (-1, 1)]
_TRIANGLE = _regular(3)
_PENTAGON = _regular(5)
_DECAGON = _regular(10)
_CIRCLE24 = _regular(24, 0)
_HALF = [(math.cos(math.radians(15 * i)), math.sin(math.radians(15 * i))) for i in range(13)]


def _unit_polygon(kind: str, u: Sequence[float]) -> tuple[Vertices, float, float]:
    """Canonical vertices, rotation (deg) and aspect (x / y stretch) of ``kind``.

    ``u`` holds 3 uniforms in [0, 1): aspect jitter, rotation, a shape parameter.
    """
    jitter = 0.87 + 0.28 * u[0]  # mild aspect change, 0.87..1.15
    if kind == "square":
        return _SQUARE, -12 + 24 * u[1], jitter
    if kind == "diamond":
        return _SQUARE, 33 + 24 * u[1], jitter
    if kind == "triangle":
        return _TRIANGLE, -15 + 30 * u[1], jitter
    if kind == "star":
        r = 0.38 + 0.12 * u[2]  # inner radius
        return [(x * r, y * r) if i % 2 else (x, y) for i, (x, y) in enumerate(_DECAGON)], 72 * u[1], jitter
    if kind == "cross":
        t = 0.28 + 0.1 * u[2]  # half arm width
        v = [(-t, -1), (t, -1), (t, -t), (1, -t), (1, t), (t, t), (t, 1), (-t, 1),
             (-t, t), (-1, t), (-1, -t), (-t, -t)]
        return v, -12 + 24 * u[1], jitter
    if kind == "pentagon":
        return _PENTAGON, 72 * u[1], jitter
    if kind == "ellipse":  # elongated: never a disc
        return _CIRCLE24, 180 * u[1], 1.7 + 1.3 * u[0]
    if kind == "bar":
        t = 0.16 + 0.17 * u[2]
        return [(-1, -t), (1, -t), (1, t), (-1, t)], 180 * u[1], 1.0
    if kind == "semicircle":
        return _HALF, 360 * u[1], jitter
    if kind == "chevron":
        t = 0.3 + 0.15 * u[2]
        return [(-1, -1), (0, 0), (1, -1), (1, -1 + 2 * t), (0, 2 * t), (-1, -1 + 2 * t)], 360 * u[1], jitter
    raise ValueError(f"unknown shape kind {kind!r}")


def _shape_mask(kind: str, size: float, u: Sequence[float],
                rim: bool) -> tuple[Image.Image, Image.Image | None, int]:
    """Rasterise ``kind`` so that its box's longer side is about ``size`` px.

    Args:
        u: 3 uniforms in [0, 1) (aspect, rotation, shape parameter).
        rim: also return the interior without its 1-px boundary.

    Returns:
        (full, inner, area): tight "L" masks of shape (h, w), 255 inside (every
        border row and column holds a 255 of ``full``); ``inner`` is None
        without ``rim`` (and for rings); ``area`` is the pixel count of ``full``.
    """
    inner = None
    if kind in ("disc", "ring"):
        a = 0.87 + 0.28 * u[0]
        w, h = (size, size / a) if a >= 1 else (size * a, size)
        w, h = max(3, int(round(w))), max(3, int(round(h)))
        box = (0, 0, w - 1, h - 1)
        m = Image.new("L", (w, h), 0)
        if kind == "disc":
            ImageDraw.Draw(m).ellipse(box, fill=255)
            if rim:
                inner = Image.new("L", (w, h), 0)
                ImageDraw.Draw(inner).ellipse(box, fill=255, outline=0)
        else:
            width = max(2, int(round((0.28 + 0.12 * u[2]) * min(w, h) / 2)))
            ImageDraw.Draw(m).ellipse(box, outline=255, width=width)
    else:
        v, rot, aspect = _unit_polygon(kind, u)
        sx, sy = math.sqrt(aspect), 1 / math.sqrt(aspect)
        c, s = math.cos(math.radians(rot)), math.sin(math.radians(rot))
        v = [(x * sx * c - y * sy * s, x * sx * s + y * sy * c) for x, y in v]  # stretch, rotate
        xs, ys = [p[0] for p in v], [p[1] for p in v]
        x0, y0 = min(xs), min(ys)
        k = (size - 1) / max(max(xs) - x0, max(ys) - y0, 1e-6)  # longer extent -> size - 1 px
        xy = [((x - x0) * k, (y - y0) * k) for x, y in v]
        w = int(math.ceil(max(p[0] for p in xy))) + 1
        h = int(math.ceil(max(p[1] for p in xy))) + 1
        m = Image.new("L", (w, h), 0)
        ImageDraw.Draw(m).polygon(xy, fill=255)
        if rim:
            inner = Image.new("L", (w, h), 0)
            ImageDraw.Draw(inner).polygon(xy, fill=255, outline=0)
    bbox = m.getbbox()
    area = w * h - m.histogram()[0]
    if bbox != (0, 0, w, h):
        m = m.crop(bbox)
        if inner is not None:
            inner = inner.crop(bbox)
    return m, inner, area


def _colour(family: str, u: Sequence[float]) -> tuple[int, int, int]:
    """An 8-bit RGB colour of the hue family ``family`` from 3 uniforms ``u``."""
    hue = HUES[family]
    if hue is None:
        r, g, b = colorsys.hsv_to_rgb(u[0], 0.12 * u[1], 0.35 + 0.6 * u[2])
    else:
        r, g, b = colorsys.hsv_to_rgb((hue + HUE_JITTER * (2 * u[0] - 1)) % 1.0,
                                      0.6 + 0.4 * u[1], 0.6 + 0.4 * u[2])
    return int(r * 255), int(g * 255), int(b * 255)


# ----------------------------------------------------------------------------
# One image
# ----------------------------------------------------------------------------

@dataclass
class ImageRecord:
    """What one generated image holds.

    boxes: (N, 4) int, ``[x0, y0, x1, y1]`` px, end exclusive (module docstring).
    labels: (N,) int, class index into ``SYNTH_CLASSES`` (0-based).
    visible: (N,) float, share of the object's pixels not covered later.
    """

    stem: str
    width: int
    height: int
    boxes: np.ndarray
    labels: np.ndarray
    visible: np.ndarray
    n_distractors: int
    dropped_objects: int  # labelled objects that found no place (occlusion budget)
    dropped_distractors: int  # distractors that found no place
    jpeg: bytes = field(repr=False, default=b"")


def _place(cand: np.ndarray, full: Image.Image, label_map: Image.Image,
           obj_boxes: list[tuple[int, int, int, int]], ids: list[int], vis_px: list[int],
           min_px: list[float]) -> tuple[int, int] | None:
    """The first candidate position that leaves every labelled object enough pixels.

    Args:
        cand: (T, 2) uniforms in [0, 1): candidate top-left corners as
            fractions of the free room ``(S - w + 1, S - h + 1)``.
        full: the shape's mask (h, w), 255 inside.
        label_map: (S, S) id of the shape that owns each pixel (0 = background).
        obj_boxes: ``(x0, y0, x1, y1)`` of the N labelled objects so far.
        ids: their shape ids in ``label_map``.
        vis_px: their visible pixel counts; updated in place on success.
        min_px: the fewest visible pixels each may keep.

    Returns:
        ``(x0, y0)`` or None. The check is exact: the pixels of ``label_map``
        under the mask are counted for every object whose box it touches.
    """
    S = label_map.size[0]
    w, h = full.size
    xy = np.floor(cand * np.array([S - w + 1, S - h + 1])).astype(np.int64).tolist()  # (T, 2)
    mask = None
    for x0, y0 in xy:
        x1, y1 = x0 + w, y0 + h
        hit = [j for j, (a, b, c, d) in enumerate(obj_boxes) if a < x1 and x0 < c and b < y1 and y0 < d]
        if not hit:
            return x0, y0
        if mask is None:
            mask = np.asarray(full) > 0  # (h, w)
        under = np.bincount(np.asarray(label_map.crop((x0, y0, x1, y1)))[mask], minlength=256)  # (256,)
        lost = [int(under[ids[j]]) for j in hit]  # pixels each touched object would lose
        if all(vis_px[j] - n >= min_px[j] for j, n in zip(hit, lost)):
            for j, n in zip(hit, lost):
                vis_px[j] -= n
            return x0, y0
    return None


_ALL_KINDS = CLASS_KINDS + DISTRACTOR_KINDS
_DISTRACTOR_FAMILIES = {k: tuple(f for f in HUES if (k, f) not in _CLASS_COMBOS) for k in _ALL_KINDS}
_TRIES = 30  # candidate positions per shape


def render_image(params: SynthParams, banks: _Banks, rng: np.random.Generator,
                 stem: str = "") -> ImageRecord:
    """Draw one image and its labels with ``rng`` (``params`` must be resolved).

    Steps: smooth colour field x texture (crops of the banks); clutter
    strokes; shapes in a random order (each pasted as a flat colour, half with
    a darker 1-px rim); a smooth, slightly tinted illumination field; additive
    noise; JPEG.
    """
    S = params.image_size
    # -- background: smooth colour field x grey texture, then clutter strokes
    pick = rng.integers(0, 1 << 30, 4).tolist()  # colour, texture, light bank entries
    xy = rng.integers(0, S, 8).tolist()  # crop offsets
    crop = [(x, y, x + S, y + S) for x, y in zip(xy[::2], xy[1::2])]
    img = ImageChops.multiply(banks.colours[pick[0] % len(banks.colours)].crop(crop[0]),
                              banks.textures[pick[1] % len(banks.textures)].crop(crop[1]))
    draw = ImageDraw.Draw(img)
    n_clutter = int(rng.poisson(params.clutter * (S / 256) ** 2))
    P = rng.random((n_clutter, 10))  # x, y, length, angle, r, g, b, width, kind, arc
    for x, y, L, a, r, gg, b, width, kind, arc in P.tolist():
        x, y, L, a = x * S, y * S, (0.02 + 0.18 * L) * S, a * 2 * math.pi
        fill, width = (int(r * 255), int(gg * 255), int(b * 255)), 1 + int(3 * width)
        if kind < 1 / 3:
            draw.line((x, y, x + L * math.cos(a), y + L * math.sin(a)), fill=fill, width=width)
        elif kind < 2 / 3:
            start = a * 180 / math.pi
            draw.arc((x - L / 2, y - L / 2, x + L / 2, y + L / 2), start, start + 60 + 210 * arc,
                     fill=fill, width=width)
        else:
            draw.rectangle((x - L / 4, y - L / 4, x + L / 4, y + L / 4), outline=fill, width=1)

    # -- shapes: labelled objects and distractors in a random drawing order
    n_obj = int(rng.integers(params.objects[0], params.objects[1] + 1))
    n_dis = int(rng.integers(params.distractors[0], params.distractors[1] + 1))
    order = rng.permutation(np.r_[np.zeros(n_obj, bool), np.ones(n_dis, bool)]).tolist()
    U = rng.random((len(order), 10))  # per shape: kind, family, size, 3 x shape, 3 x colour, rim
    C = rng.random((len(order), _TRIES, 2))  # first-round candidate positions (see _place)
    label_map = Image.new("L", (S, S), 0)  # id of the shape that owns each pixel
    boxes, labels, areas, ids = [], [], [], []  # of the labelled objects placed so far
    vis_px: list[int] = []  # their pixels still visible
    min_px: list[float] = []  # the fewest visible pixels each may keep
    dropped_obj, dropped_dis, n_drawn_dis, shape_id = 0, 0, 0, 0
    for k, (is_distractor, u) in enumerate(zip(order, U.tolist())):
        if is_distractor:
            lo, hi = params.distractor_size
            kind = _ALL_KINDS[int(u[0] * len(_ALL_KINDS))]
            fams = _DISTRACTOR_FAMILIES[kind]
            family = fams[int(u[1] * len(fams))]
            label = -1
        else:
            lo, hi = params.object_size
            label = int(u[0] * len(CLASS_SPECS))
            _, kind, family = CLASS_SPECS[label]
        size = min(math.exp(math.log(lo) + u[2] * (math.log(hi + 1) - math.log(lo))), hi)
        rim = bool(u[9] < 0.5)
        full, inner, area = _shape_mask(kind, size, u[3:6], rim)
        w, h = full.size
        # objects get 3 rounds of candidate positions, distractors 1
        pos = None
        for round_ in range(1 if is_distractor else 3):
            cand = C[k] if round_ == 0 else rng.random((_TRIES, 2))
            pos = _place(cand, full, label_map, boxes, ids, vis_px, min_px)
            if pos is not None:
                break
        if pos is None:
            dropped_dis += int(is_distractor)
            dropped_obj += int(not is_distractor)
            continue
        x0, y0 = pos
        rgb = _colour(family, u[6:9])
        if inner is not None:
            img.paste(tuple(int(v * 0.55) for v in rgb), (x0, y0, x0 + w, y0 + h), full)
            img.paste(rgb, (x0, y0, x0 + w, y0 + h), inner)
        else:
            img.paste(rgb, (x0, y0, x0 + w, y0 + h), full)
        shape_id += 1
        label_map.paste(shape_id, (x0, y0, x0 + w, y0 + h), full)
        if label < 0:
            n_drawn_dis += 1
            continue
        boxes.append((x0, y0, x0 + w, y0 + h))
        labels.append(label)
        areas.append(area)
        ids.append(shape_id)
        vis_px.append(area)
        min_px.append((1.0 - params.max_occlusion) * area)

    # -- illumination, sensor noise and JPEG
    img = ImageChops.multiply(img, banks.lights[pick[2] % len(banks.lights)].crop(crop[2]))
    img = ImageChops.add(img, banks.noise.crop(crop[3]), 1.0, -16)
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=params.jpeg_quality)
    counts = np.asarray(label_map.histogram())  # (256,) pixels per shape id
    visible = counts[ids] / np.maximum(areas, 1) if ids else np.zeros(0)
    return ImageRecord(stem, S, S, np.asarray(boxes, np.int64).reshape(-1, 4),
                       np.asarray(labels, np.int64), np.asarray(visible, np.float64),
                       n_drawn_dis, dropped_obj, dropped_dis, buf.getvalue())


# ----------------------------------------------------------------------------
# Annotation files
# ----------------------------------------------------------------------------

def voc_xml(rec: ImageRecord) -> str:
    """The VOC annotation of ``rec`` (1-based inclusive corners), deterministic text."""
    lines = [
        "<annotation>",
        f"\t<folder>{VOC_FOLDER}</folder>",
        f"\t<filename>{rec.stem}.jpg</filename>",
        "\t<source>",
        "\t\t<database>lossbench synth</database>",
        "\t</source>",
        "\t<size>",
        f"\t\t<width>{rec.width}</width>",
        f"\t\t<height>{rec.height}</height>",
        "\t\t<depth>3</depth>",
        "\t</size>",
        "\t<segmented>0</segmented>",
    ]
    for (x0, y0, x1, y1), lab, vis in zip(rec.boxes.tolist(), rec.labels.tolist(), rec.visible.tolist()):
        lines += [
            "\t<object>",
            f"\t\t<name>{SYNTH_CLASSES[lab]}</name>",
            "\t\t<pose>Unspecified</pose>",
            "\t\t<truncated>0</truncated>",
            f"\t\t<occluded>{int(vis < 0.95)}</occluded>",
            "\t\t<difficult>0</difficult>",
            "\t\t<bndbox>",
            f"\t\t\t<xmin>{x0 + 1}</xmin>",
            f"\t\t\t<ymin>{y0 + 1}</ymin>",
            f"\t\t\t<xmax>{x1}</xmax>",
            f"\t\t\t<ymax>{y1}</ymax>",
            "\t\t</bndbox>",
            "\t</object>",
        ]
    lines.append("</annotation>")
    return "\n".join(lines) + "\n"


def coco_categories() -> list[dict[str, Any]]:
    """COCO categories of the set: ids 1..8 in ``SYNTH_CLASSES`` order."""
    return [{"id": k + 1, "name": name, "supercategory": "shape"}
            for k, name in enumerate(SYNTH_CLASSES)]


def coco_dataset(records: Sequence[ImageRecord], info: dict[str, Any]) -> dict[str, Any]:
    """A COCO detection dict for ``records`` (image ids 1..n in order)."""
    images, anns = [], []
    for i, rec in enumerate(records, 1):
        images.append({"id": i, "file_name": f"VOCdevkit/{VOC_FOLDER}/JPEGImages/{rec.stem}.jpg",
                       "width": rec.width, "height": rec.height})
        for (x0, y0, x1, y1), lab, vis in zip(rec.boxes.tolist(), rec.labels.tolist(),
                                              rec.visible.tolist()):
            w, h = x1 - x0, y1 - y0
            anns.append({"id": len(anns) + 1, "image_id": i, "category_id": lab + 1,
                         "bbox": [x0, y0, w, h], "area": w * h, "iscrowd": 0,
                         "visible": round(vis, 3)})
    return {"info": info, "licenses": [], "categories": coco_categories(),
            "images": images, "annotations": anns}


# ----------------------------------------------------------------------------
# The whole set
# ----------------------------------------------------------------------------

_STATE: dict[str, Any] = {}


def _init_worker(params: SynthParams, seed: int) -> None:
    _STATE.update(params=params, seed=seed, banks=_make_banks(seed, params.image_size))


def _work(task: tuple[str, int]) -> ImageRecord:
    """Render image ``idx`` of ``split`` with its own generator."""
    split, idx = task
    rng = np.random.default_rng([_STATE["seed"], _SPLIT_CODE[split], idx])
    return render_image(_STATE["params"], _STATE["banks"], rng, f"{split}_{idx:06d}")


def iter_images(params: SynthParams, seed: int, tasks: Sequence[tuple[str, int]],
                workers: int = 1) -> Iterator[ImageRecord]:
    """Yield the records (JPEG bytes included) of ``tasks`` = ``(split, 1-based index)``, in order.

    ``workers > 1`` renders in forked processes; the output does not depend
    on ``workers``.
    """
    params = params.resolved()
    _init_worker(params, seed)  # forked workers inherit the banks
    if workers <= 1 or len(tasks) < 2 * workers:
        for t in tasks:
            yield _work(t)
        return
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(workers) as pool:
        yield from pool.imap(_work, tasks, chunksize=8)


def _write(path: str, data: bytes) -> None:
    """Write a new file with plain ``os`` calls."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    finally:
        os.close(fd)


class _Writer:
    """Writes files from a few threads, so that slow file creation (it blocks
    without the GIL) overlaps with rendering; at most ``pending`` files wait."""

    def __init__(self, threads: int = 4, pending: int = 256):
        from concurrent.futures import ThreadPoolExecutor

        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="synth-write")
        self._slots = threading.BoundedSemaphore(pending)
        self._futures: list = []

    def write(self, path: str, data: bytes) -> None:
        self._slots.acquire()
        fut = self._pool.submit(_write, path, data)
        fut.add_done_callback(lambda _: self._slots.release())
        self._futures.append(fut)

    def close(self) -> None:
        """Wait for every file; re-raise the first error."""
        self._pool.shutdown(wait=True)
        for fut in self._futures:
            fut.result()


def dataset_statistics(records_by_split: dict[str, list[ImageRecord]],
                       params: SynthParams) -> dict[str, Any]:
    """Objects per image, object size histogram, classes, occlusion; per split and overall.

    Sizes are ``sqrt(w * h)`` of each box, px, in bins with edges
    ``[0, 8, 16, 32, 64, 128, 256, 512, inf)``; ``coco_area`` counts boxes
    by COCO's small (< 32^2) / medium (< 96^2) / large ranges of ``w * h``.
    """
    edges = [0, 8, 16, 32, 64, 128, 256, 512, math.inf]
    out: dict[str, Any] = {}
    for split, recs in list(records_by_split.items()) + [("all", [r for v in records_by_split.values() for r in v])]:
        n_obj = np.array([len(r.labels) for r in recs], int)
        boxes = np.concatenate([r.boxes for r in recs]) if recs else np.zeros((0, 4))
        labels = np.concatenate([r.labels for r in recs]) if recs else np.zeros(0, int)
        vis = np.concatenate([r.visible for r in recs]) if recs else np.zeros(0)
        wh = (boxes[:, 2:] - boxes[:, :2]).astype(float)
        side = np.sqrt(wh.prod(1)) if len(wh) else np.zeros(0)
        longer = wh.max(1) if len(wh) else np.zeros(0)
        area = wh.prod(1) if len(wh) else np.zeros(0)
        hist = np.histogram(side, bins=np.array(edges[:-1] + [1e9]))[0]
        n = max(len(recs), 1)
        out[split] = {
            "images": len(recs),
            "objects": int(n_obj.sum()),
            "objects_per_image": {
                "mean": round(float(n_obj.mean()) if len(n_obj) else 0.0, 4),
                "min": int(n_obj.min()) if len(n_obj) else 0,
                "max": int(n_obj.max()) if len(n_obj) else 0,
                "histogram": {str(k): int(v) for k, v in enumerate(np.bincount(n_obj)) if v} if len(n_obj) else {},
            },
            "distractors_per_image": round(sum(r.n_distractors for r in recs) / n, 4),
            "dropped_objects": int(sum(r.dropped_objects for r in recs)),
            "dropped_distractors": int(sum(r.dropped_distractors for r in recs)),
            "object_size": {
                "measure": "sqrt(w*h) px",
                "edges": [e if e != math.inf else "inf" for e in edges],
                "counts": [int(v) for v in hist],
                "longer_side_min": int(longer.min()) if len(longer) else 0,
                "longer_side_max": int(longer.max()) if len(longer) else 0,
                "mean": round(float(side.mean()), 3) if len(side) else 0.0,
            },
            "coco_area": {"small": int((area < 32 ** 2).sum()),
                          "medium": int(((area >= 32 ** 2) & (area < 96 ** 2)).sum()),
                          "large": int((area >= 96 ** 2).sum())},
            "class_counts": {name: int((labels == k).sum()) for k, name in enumerate(SYNTH_CLASSES)},
            "visible_fraction": {
                "mean": round(float(vis.mean()), 4) if len(vis) else 1.0,
                "min": round(float(vis.min()), 4) if len(vis) else 1.0,
                "occluded_share": round(float((vis < 0.95).mean()), 4) if len(vis) else 0.0,
            },
            "box_area_share": round(float(area.sum()) / (n * params.image_size ** 2), 5),
        }
    return out


def generate(out: str | os.PathLike, seed: int, n_train: int, n_val: int, n_test: int,
             params: SynthParams = SynthParams(), workers: int = 1,
             anchor_config: str | os.PathLike | None = None, stats_images: int = 2000,
             log=print) -> dict[str, Any]:
    """Write the whole set under ``out`` atomically and return its statistics.

    ``out`` is replaced as a whole (built in a temporary folder beside it and
    renamed); an existing non-empty ``out`` that is not an earlier synth output
    (no ``stats.json``) is refused. ``anchor_config`` (an MMDetection model
    config) adds the positive-anchor statistics of
    ``lossbench.data.anchor_stats.anchor_statistics`` on up to
    ``stats_images`` images (the first of each split, proportionally).
    Returns the dict written to ``out/stats.json``.
    """
    params = params.resolved()
    out = Path(out)
    if out.exists() and any(out.iterdir()) and not (out / "stats.json").is_file():
        raise FileExistsError(f"{out}: exists, is not empty and holds no synth stats.json; "
                              "refusing to replace it (choose another --out)")
    counts = {"train": n_train, "val": n_val, "test": n_test}
    for k, v in counts.items():
        if v < 0:
            raise ValueError(f"--n-{k} must be >= 0, got {v}")
    t0 = time.perf_counter()
    with atomic_path(out) as tmp:
        voc = tmp / "VOCdevkit" / VOC_FOLDER
        for sub in ("Annotations", "JPEGImages", "ImageSets/Main"):
            (voc / sub).mkdir(parents=True, exist_ok=True)
        (tmp / "annotations").mkdir()
        tasks = [(s, i) for s in SPLITS for i in range(1, counts[s] + 1)]
        recs: dict[str, list[ImageRecord]] = {s: [] for s in SPLITS}
        writer = _Writer()
        try:
            for rec in iter_images(params, seed, tasks, workers):
                writer.write(str(voc / "JPEGImages" / f"{rec.stem}.jpg"), rec.jpeg)
                writer.write(str(voc / "Annotations" / f"{rec.stem}.xml"), voc_xml(rec).encode("utf-8"))
                rec.jpeg = b""
                recs[rec.stem.split("_")[0]].append(rec)
        finally:
            writer.close()
        info = {"description": "lossbench synthetic detection set", "seed": seed,
                "params": _params_dict(params)}
        for s in SPLITS:
            with open(voc / "ImageSets" / "Main" / f"{s}.txt", "w", encoding="utf-8") as f:
                f.write("".join(f"{r.stem}\n" for r in recs[s]))
            atomic_write_json(tmp / "annotations" / f"{s}.json",
                              coco_dataset(recs[s], dict(info, split=s)), indent=None)
        with open(voc / "ImageSets" / "Main" / "trainval.txt", "w", encoding="utf-8") as f:
            f.write("".join(f"{r.stem}\n" for s in ("train", "val") for r in recs[s]))
        elapsed = time.perf_counter() - t0  # images and annotation files, not the anchor statistics
        stats: dict[str, Any] = {"seed": seed, "params": _params_dict(params),
                                 "classes": list(SYNTH_CLASSES),
                                 "splits": dataset_statistics(recs, params)}
        if anchor_config is not None:
            from lossbench.data.anchor_stats import anchor_statistics

            sample = _stats_sample(recs, stats_images)
            stats["anchors"] = anchor_statistics([(r.boxes, r.labels) for r in sample],
                                                 params.image_size, anchor_config)
        atomic_write_json(tmp / "stats.json", stats)
    stats_runtime = {"seconds": elapsed, "images_per_second": len(tasks) / max(elapsed, 1e-9)}
    log(summary_text(stats, out, stats_runtime))
    return stats


#: keys of a profile's ``data`` mapping (params.yaml) besides the SynthParams fields.
RUN_KEYS: dict[str, Any] = {"seed": 0, "n_train": 2000, "n_val": 500, "n_test": 500, "workers": 0,
                            "anchor_config": "default", "stats_images": 2000}


def generate_kwargs(data: dict[str, Any], where: str = "data") -> dict[str, Any]:
    """``generate`` keyword arguments from a mapping such as a profile's ``data``.

    Keys: ``RUN_KEYS`` (``workers: 0`` = one per CPU; ``anchor_config``:
    ``default``, ``none`` or a config path) and the fields of ``SynthParams``
    (pairs as 2-lists). An unknown key or a bad value is a ``ValueError``
    naming ``where`` and the key.
    """
    fields = set(SynthParams.__dataclass_fields__)
    unknown = set(data) - fields - set(RUN_KEYS)
    if unknown:
        raise ValueError(f"{where}: unknown keys {sorted(unknown)}; allowed {sorted(fields | set(RUN_KEYS))}")
    opts = {**RUN_KEYS, **{k: v for k, v in data.items() if k in RUN_KEYS}}
    pairs = {"objects", "object_size", "distractors", "distractor_size"}
    try:
        params = SynthParams(**{k: (tuple(v) if k in pairs and v is not None else v)
                                for k, v in data.items() if k in fields}).resolved()
    except (TypeError, ValueError) as e:
        raise ValueError(f"{where}: {e}") from e
    anchor = opts["anchor_config"]
    if anchor == "default" or anchor is None:
        from lossbench.data.anchor_stats import find_model_config

        anchor = find_model_config()
    elif str(anchor).lower() == "none":
        anchor = None
    return {"seed": int(opts["seed"]), "n_train": int(opts["n_train"]), "n_val": int(opts["n_val"]),
            "n_test": int(opts["n_test"]), "params": params,
            "workers": int(opts["workers"]) or os.cpu_count() or 1,
            "anchor_config": anchor, "stats_images": int(opts["stats_images"])}


def _stats_sample(recs: dict[str, list[ImageRecord]], limit: int) -> list[ImageRecord]:
    """Up to ``limit`` records: the first images of each split, in proportion."""
    total = sum(len(v) for v in recs.values())
    if total <= limit:
        return [r for s in SPLITS for r in recs[s]]
    return [r for s in SPLITS for r in recs[s][:max(1, round(limit * len(recs[s]) / total))]]


def _params_dict(p: SynthParams) -> dict[str, Any]:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(p).items()}


def summary_text(stats: dict[str, Any], out: Path | None = None,
                 runtime: dict[str, float] | None = None) -> str:
    """A few human-readable lines about a generated set."""
    a = stats["splits"]["all"]
    p = stats["params"]
    lines = []
    if out is not None:
        lines.append(f"wrote {a['images']} images to {out} "
                     + " / ".join(f"{s} {stats['splits'][s]['images']}" for s in SPLITS))
    if runtime:
        lines.append(f"  speed: {runtime['images_per_second']:.0f} images/s ({runtime['seconds']:.1f} s)")
    opi = a["objects_per_image"]
    lines.append(f"  objects/image: mean {opi['mean']:.2f} (min {opi['min']}, max {opi['max']}), "
                 f"distractors/image {a['distractors_per_image']:.2f}, "
                 f"objects dropped for lack of room {a['dropped_objects']}")
    sz = a["object_size"]
    hist = ", ".join(f"[{lo},{hi}): {c}" for lo, hi, c in zip(sz["edges"][:-1], sz["edges"][1:], sz["counts"]) if c)
    lines.append(f"  object size sqrt(wh) px (requested longer side {p['object_size'][0]}..{p['object_size'][1]}): {hist}")
    lines.append(f"  visible fraction mean {a['visible_fraction']['mean']:.3f}, "
                 f"occluded (<95% visible) {100 * a['visible_fraction']['occluded_share']:.1f}%")
    if "anchors" in stats:
        an = stats["anchors"]
        lines.append(f"  anchors/image {an['anchors_per_image']}, positives/image {an['positives_per_image']:.2f}, "
                     f"positive share {100 * an['positive_share']:.3f}% "
                     f"(ignored {100 * an['ignored_share']:.3f}%, negatives {100 * an['negative_share']:.2f}%)")
    return "\n".join(lines)
