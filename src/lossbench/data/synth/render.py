"""Drawing the images: one with ``render_image``, many in parallel with ``iter_images``.

Each image is a textured, cluttered background with ``objects`` labelled shapes of 8 classes (``SYNTH_CLASSES``, a shape
in a hue family) and ``distractors`` unlabelled ones. Pairs are confusable on purpose: by colour (``red_disc`` /
``orange_disc``, hues 25 +- 10 deg apart) and by shape (``red_disc`` / ``red_ring``; ``blue_square`` / ``blue_diamond``,
rotated by 0 or 45 +- 12 deg). Distractors, the hard negatives, combine a class shape or colour with one no class has. A
placement is accepted only if every labelled object drawn before keeps at least ``1 - max_occlusion`` of its pixels
(counted on a label map; an object that finds no place in 90 tries is dropped and counted). Object size (longer box
side, px) is log-uniform in ``object_size``. A box ``[x0, y0, x1, y1]`` covers columns ``x0 .. x1 - 1`` and rows
``y0 .. y1 - 1`` of the object's drawn, amodal extent.

Determinism: image ``i`` of split ``s`` comes from a generator seeded by ``(seed, s, i)``,
the banks from ``(seed,)``: byte-identical output for a seed whatever the number of
workers, and a split's images do not depend on another's size (same Pillow/libjpeg).
"""

from __future__ import annotations

import colorsys
import io
import math
import multiprocessing
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image, ImageChops, ImageDraw

from lossbench.data.classes import SYNTH_CLASSES
from lossbench.data.synth.params import SynthParams

SPLITS: tuple[str, ...] = ("train", "val", "test")  # s = 1, 2, 3 in the seed of an image

# Hue families: centre hue in [0, 1) (0 = red); None = grey (saturation < 0.15).
HUES: dict[str, float | None] = {"red": 0.0, "orange": 0.07, "yellow": 0.15, "green": 0.33, "cyan": 0.50,
                                 "blue": 0.62, "purple": 0.76, "magenta": 0.88, "grey": None}
HUE_JITTER = 0.014  # +- 5 deg: red and orange stay 25 +- 10 deg apart

#: (class name, shape kind, hue family), index k -> COCO category k + 1.
CLASS_SPECS: tuple[tuple[str, str, str], ...] = (
    ("red_disc", "disc", "red"), ("orange_disc", "disc", "orange"), ("red_ring", "ring", "red"),
    ("blue_square", "square", "blue"), ("blue_diamond", "diamond", "blue"), ("green_triangle", "triangle", "green"),
    ("yellow_star", "star", "yellow"), ("purple_cross", "cross", "purple"))
assert tuple(c[0] for c in CLASS_SPECS) == SYNTH_CLASSES
_CLASS_COMBOS = {(kind, hue) for _, kind, hue in CLASS_SPECS}
CLASS_KINDS: tuple[str, ...] = tuple(sorted({kind for _, kind, _ in CLASS_SPECS}))
#: shapes no class has; drawn only as distractors.
DISTRACTOR_KINDS: tuple[str, ...] = ("ellipse", "bar", "pentagon", "semicircle", "chevron")


@dataclass
class Banks:
    """Textures and noise shared by all images of one seed (all RGB, (2S, 2S)); an image takes
    a crop of a colour field, multiplies in a texture (``255 * (1 - c + c * t)``) and, last, a
    light field (about [165, 255], /255), and adds the noise (sigma 4, stored + 16)."""

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


def make_banks(seed: int, size: int) -> Banks:
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
    return Banks(colours, textures, lights, Image.fromarray(noise, "RGB"))


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
_HALF = _CIRCLE24[:13]  # 0..180 deg


def _unit_polygon(kind: str, u: Sequence[float]) -> tuple[Vertices, float, float]:
    """Canonical vertices, rotation (deg) and aspect (x / y stretch) of ``kind``. ``u``: 3 uniforms in
    [0, 1): aspect jitter, rotation, a shape parameter."""
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
        v = [(-t, -1), (t, -1), (t, -t), (1, -t), (1, t), (t, t), (t, 1), (-t, 1), (-t, t), (-1, t), (-1, -t), (-t, -t)]
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


def _shape_mask(kind: str, size: float, u: Sequence[float], rim: bool) -> tuple[Image.Image, Image.Image | None, int]:
    """Rasterise ``kind`` (``u``: aspect, rotation, shape uniforms) to a box whose longer side is
    about ``size`` px: ``(full, inner, area)``, tight (h, w) "L" masks, 255 inside; ``inner``
    (with ``rim``, not for rings) lacks the 1-px boundary; ``area`` counts ``full``'s pixels."""
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
        r, g, b = colorsys.hsv_to_rgb((hue + HUE_JITTER * (2 * u[0] - 1)) % 1.0, 0.6 + 0.4 * u[1], 0.6 + 0.4 * u[2])
    return int(r * 255), int(g * 255), int(b * 255)


@dataclass
class ImageRecord:
    """What one generated image holds."""

    stem: str
    width: int
    height: int
    boxes: np.ndarray  # (N, 4) int, [x0, y0, x1, y1] px, end exclusive
    labels: np.ndarray  # (N,) int, class index into SYNTH_CLASSES (0-based)
    visible: np.ndarray  # (N,) float, share of the object's pixels not covered later
    n_distractors: int
    dropped_objects: int  # labelled objects that found no place (occlusion budget)
    dropped_distractors: int  # distractors that found no place
    jpeg: bytes = field(repr=False, default=b"")


def _place(cand: np.ndarray, full: Image.Image, label_map: Image.Image,
           obj_boxes: list[tuple[int, int, int, int]], ids: list[int], vis_px: list[int],
           min_px: list[float]) -> tuple[int, int] | None:
    """The first candidate ``(x0, y0)`` that leaves every labelled object enough pixels, or None.

    ``cand``: (T, 2) uniforms, top-left corners as fractions of the free room ``(S - w + 1, S - h + 1)``; ``full``: the
    shape's (h, w) mask; ``label_map``: (S, S) shape id per pixel (0 = background); ``obj_boxes``, ``ids``, ``vis_px``,
    ``min_px``: per labelled object so far, its box, id, visible pixels (updated on success) and the fewest it may keep.
    Exact: the pixels under the mask are counted for every object whose box it touches.
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


def render_image(params: SynthParams, banks: Banks, rng: np.random.Generator, stem: str = "") -> ImageRecord:
    """Draw one image and its labels with ``rng`` (``params`` must be resolved); shapes are flat
    colours, half with a darker 1-px rim."""
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
        rgb, box = _colour(family, u[6:9]), (x0, y0, x0 + w, y0 + h)
        img.paste(rgb if inner is None else tuple(int(v * 0.55) for v in rgb), box, full)  # a darker rim
        if inner is not None:
            img.paste(rgb, box, inner)
        shape_id += 1
        label_map.paste(shape_id, box, full)
        if label < 0:
            n_drawn_dis += 1
            continue
        boxes.append(box)
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


_STATE: dict[str, Any] = {}  # params, seed and banks of the images being rendered


def _work(task: tuple[str, int]) -> ImageRecord:
    """Render image ``idx`` of ``split`` with its own generator."""
    split, idx = task
    rng = np.random.default_rng([_STATE["seed"], SPLITS.index(split) + 1, idx])
    return render_image(_STATE["params"], _STATE["banks"], rng, f"{split}_{idx:06d}")


def iter_images(params: SynthParams, seed: int, tasks: Sequence[tuple[str, int]],
                workers: int = 1) -> Iterator[ImageRecord]:
    """Yield the records (JPEG bytes included) of ``tasks`` = ``(split, 1-based index)``, in order.
    ``workers > 1`` renders in forked processes (the output does not depend on ``workers``)."""
    params = params.resolved()
    _STATE.update(params=params, seed=seed, banks=make_banks(seed, params.image_size))  # forks inherit it
    if workers <= 1 or len(tasks) < 2 * workers:
        yield from map(_work, tasks)
        return
    with multiprocessing.get_context("fork").Pool(workers) as pool:
        yield from pool.imap(_work, tasks, chunksize=8)
