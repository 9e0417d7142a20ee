"""Turn a fetched or generated set into the COCO-format splits that training reads.

Three disjoint splits: settings are chosen on ``val``, results are reported on ``test``; what each dataset's splits
hold: ``_sources`` and ``lossbench prepare --help`` (coco2017's val: the ``val_holdout`` train2017 images with the
smallest ``md5(f"coco-val-holdout:{file_name}")``, :data:`HOLDOUT_RULE`). Disjointness (:data:`DISJOINT_RULE`) is
checked before anything is written. ``out`` (replaced atomically as a whole) receives ``{train,val,test}.json``, loaded
back with pycocotools before they are kept, ``summary.json`` (per split counts, ``splits_disjoint``, the hold-out's size
and rule) and, for coco2017, ``val_holdout.txt`` (the held-out ``file_name`` values, sorted, one a line). Contract of
the JSON files:

- ``images[].file_name`` is relative to ``--root``; COCO image and annotation ids are kept, VOC ids are ``1..n``;
  ``segmentation`` is dropped;
- ``categories`` have ids ``1..C`` in the order of ``lossbench.data.classes.class_names`` (MMDetection's orders);
  input categories are matched by name (COCO's 1..90 become 1..80);
- ``annotations[].bbox`` is ``[x, y, w, h]`` px. VOC corners, 1-based inclusive, become ``[xmin - 1, ymin - 1,
  xmax - xmin + 1, ymax - ymin + 1]``, as the generated set's do (MMDetection's ``XMLDataset`` reads them 1 px
  narrower); fractional coordinates are kept to 0.001 px, never truncated; image sizes must be positive whole numbers;
- VOC ``difficult`` objects are kept with ``iscrowd: 1`` and ``difficult: 1`` (COCO evaluation ignores crowd boxes as
  the VOC protocol ignores difficult ones).

Malformed input is an error naming the file: XML that does not parse, a missing or non-finite size, box or area, a
fractional image size, an unknown class, an empty box or one entirely outside the image, a listed image without its
annotation or JPEG, a JPEG whose size differs from the annotation's. Boxes partly outside are clipped and counted in
``summary.json`` (``strict=True``: an error); COCO boxes under 1 px after clipping are dropped and counted, as
MMDetection does. The JSON written is strict (no ``NaN``). ``subset=N`` keeps N images per split, the first by
``md5(f"{seed}:{file_name}")``: deterministic and nested, applied once the splits are formed.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import math
import os
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from itertools import combinations
from pathlib import Path
from typing import Any

from lossbench.data.classes import SYNTH_CLASSES, class_names
from lossbench.utils import atomic_path, atomic_write_json, atomic_write_text, read_json

DATASETS: tuple[str, ...] = ("synth", "voc2007", "voc0712", "coco2017")
SPLITS: tuple[str, ...] = ("train", "val", "test")
_MAX_EXAMPLES = 20
_FEW = 5  # examples named in an overlap error
#: train2017 images held out as the coco2017 val split unless ``val_holdout`` says otherwise.
VAL_HOLDOUT = 5000
HOLDOUT_RULE = ('val = the val_holdout train2017 images with the smallest md5(f"coco-val-holdout:{file_name}") '
                "hex digest (file_name as in instances_train2017.json); train = the rest of train2017")
DISJOINT_RULE = ("no file_name and no image content (md5 of the file's bytes, hashed where two splits hold "
                 "files of one size) in two splits; checked on the whole splits, before subset")


class PrepareError(ValueError):
    """Malformed or missing input; the message names the file and the problem."""


@dataclass
class Entry:
    """One image and its boxes (``category_id`` 1..C, ``bbox`` [x, y, w, h] px, ``area``,
    ``iscrowd``, maybe ``difficult``, ``visible`` or a kept ``id``), before ids are assigned."""

    file_name: str
    width: int
    height: int
    anns: list[dict[str, Any]]
    image_id: int | None = None  # kept COCO id; None -> assigned 1..n


@dataclass
class Report:
    """What was repaired along the way: one line per box (counted in ``summary.json``)."""

    clipped: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)


def _num(node: ET.Element, tag: str) -> float:
    """The finite number in ``node``'s ``tag``; a ValueError quoting its text otherwise."""
    text = node.findtext(tag)
    try:
        v = float(text.strip())
    except (AttributeError, ValueError):  # missing or not a number
        v = math.nan
    if not math.isfinite(v):
        raise ValueError(f"<{tag}> is {text!r}")
    return v


def _finite(v: Any) -> bool:
    """True for a finite JSON number (not a bool)."""
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _pixels(v: Any) -> int:
    """An image size: a positive whole number; a ValueError otherwise."""
    if not (_finite(v) and v > 0 and float(v).is_integer()):
        raise ValueError(f"{v!r} is not a whole number > 0")
    return int(v)


def parse_voc_xml(path: Path, classes: Sequence[str], report: Report, strict: bool = False,
                  where: str = "") -> tuple[int, int, list[dict[str, Any]]]:
    """Read one VOC annotation: ``(width, height, anns)``; see the module docstring."""
    try:
        tree = ET.parse(path)
    except ET.ParseError as e:
        raise PrepareError(f"{path}: not valid XML ({e})") from e
    except OSError as e:
        raise PrepareError(f"{path}: cannot read the annotation ({e.strerror})") from e
    ann = tree.getroot()
    try:
        W, H = (_pixels(_num(ann, f"size/{t}")) for t in ("width", "height"))
    except ValueError as e:
        raise PrepareError(f"{path}: <size> needs finite numeric <width> and <height>, whole "
                           f"numbers of pixels ({e})") from e
    anns = []
    for k, obj in enumerate(ann.findall("object")):
        name = (obj.findtext("name") or "").strip()
        if name not in classes:
            raise PrepareError(f"{path}: object {k}: unknown class {name!r} (expected one of: {', '.join(classes)})")
        try:
            x1, y1, x2, y2 = (_num(obj, f"bndbox/{t}") for t in ("xmin", "ymin", "xmax", "ymax"))
        except ValueError as e:
            raise PrepareError(f"{path}: object {k} ({name}): <bndbox> needs finite numeric "
                               f"xmin, ymin, xmax, ymax ({e})") from e
        box = tuple(_tidy(v) for v in (x1, y1, x2, y2))
        if x1 > x2 or y1 > y2:
            raise PrepareError(f"{path}: object {k} ({name}): empty box xmin,ymin,xmax,ymax = {box}")
        if x2 < 1 or y2 < 1 or x1 > W or y1 > H:
            raise PrepareError(f"{path}: object {k} ({name}): box {box} lies outside the {W}x{H} image")
        if x1 < 1 or y1 < 1 or x2 > W or y2 > H:
            if strict:
                raise PrepareError(f"{path}: object {k} ({name}): box {box} extends outside the {W}x{H} image")
            x1, y1, x2, y2 = max(x1, 1), max(y1, 1), min(x2, W), min(y2, H)
            report.clipped.append(f"{where or path}: object {k} ({name}) {box} -> "
                                  f"{tuple(_tidy(v) for v in (x1, y1, x2, y2))}")
        text = (obj.findtext("difficult") or "").strip()
        if text not in ("", "0", "1"):
            raise PrepareError(f"{path}: object {k} ({name}): <difficult> must be 0 or 1, got {text!r}")
        difficult = text == "1"
        w, h = x2 - x1 + 1, y2 - y1 + 1
        anns.append({"category_id": classes.index(name) + 1, "bbox": [_tidy(x1 - 1), _tidy(y1 - 1), _tidy(w), _tidy(h)],
                     "area": _tidy(w * h), "iscrowd": int(difficult), "difficult": int(difficult)})
    return W, H, anns


def _tidy(v: float) -> int | float:
    """An int when ``v`` is whole (JSON stays ``12``, not ``12.0``)."""
    return int(v) if float(v).is_integer() else round(float(v), 3)


def read_voc(root: Path, year: str, imageset: str, report: Report, strict: bool = False,
             check_images: bool = True) -> list[Entry]:
    """Images of ``VOC{year}/ImageSets/Main/{imageset}.txt`` with their boxes."""
    vdir = (root / "VOCdevkit" if (root / "VOCdevkit").is_dir() else root) / f"VOC{year}"
    listing = vdir / "ImageSets" / "Main" / f"{imageset}.txt"
    if not listing.is_file():
        raise PrepareError(f"{listing}: missing (is VOC{year} fetched under {root}? "
                           f"try `lossbench fetch voc{year} --root {root}`)")
    with open(listing, encoding="utf-8") as f:
        ids = [line.split()[0] for line in f if line.strip()]
    if not ids:
        raise PrepareError(f"{listing}: lists no images")
    out = []
    for img_id in ids:
        xml = vdir / "Annotations" / f"{img_id}.xml"
        if not xml.is_file():
            raise PrepareError(f"{xml}: missing (listed in {listing})")
        W, H, anns = parse_voc_xml(xml, class_names("voc2007"), report, strict, where=str(xml.relative_to(root)))
        jpg = vdir / "JPEGImages" / f"{img_id}.jpg"
        _check_image(jpg, W, H, xml, check_images)
        out.append(Entry(jpg.relative_to(root).as_posix(), W, H, anns))
    return out


def _check_image(path: Path, W: int, H: int, ann_file: Path | str, check_size: bool) -> None:
    if not path.is_file():
        raise PrepareError(f"{path}: image missing (named by {ann_file})")
    if check_size:
        from PIL import Image

        try:
            with Image.open(path) as im:
                size = im.size
        except OSError as e:
            raise PrepareError(f"{path}: not a readable image ({e})") from e
        if size != (W, H):
            raise PrepareError(f"{path}: image is {size[0]}x{size[1]} but {ann_file} says {W}x{H}")


def read_coco(root: Path, ann_file: Path, image_dir: Path, classes: Sequence[str], report: Report,
              strict: bool = False, check_images: bool = True, keep_ids: bool = True,
              extra_keys: Sequence[str] = ()) -> list[Entry]:
    """Images of ``ann_file`` (``file_name`` relative to ``image_dir``; output paths relative to
    ``root``) with their boxes, categories matched by name to ``classes`` (ids 1..C); with
    ``keep_ids`` the JSON's image and annotation ids, and ``extra_keys`` copied through."""
    if not ann_file.is_file():
        raise PrepareError(f"{ann_file}: missing")
    try:
        data = read_json(ann_file)
    except ValueError as e:
        raise PrepareError(str(e)) from e
    for key in ("images", "annotations", "categories"):
        if not isinstance(data.get(key) if isinstance(data, dict) else None, list):
            raise PrepareError(f"{ann_file}: expected a list under {key!r}")
    order = {n: k for k, n in enumerate(classes, 1)}
    remap = {}
    for c in data["categories"]:
        cid, name = c.get("id"), c.get("name")
        if name not in order or cid in remap or order[name] in remap.values():
            raise PrepareError(f"{ann_file}: {'repeated' if name in order else 'unknown'} category "
                               f"id={cid!r} name={name!r} (expected each of the {len(classes)} "
                               "classes of lossbench.data.classes at most once)")
        remap[cid] = order[name]
    images: dict[int, Entry] = {}
    for im in data["images"]:
        try:
            iid, fn, W, H = im["id"], im["file_name"], _pixels(im["width"]), _pixels(im["height"])
        except (KeyError, TypeError, ValueError) as e:
            raise PrepareError(f"{ann_file}: image {im.get('id', '?') if isinstance(im, dict) else im!r}: "
                               f"needs id, file_name and positive whole width, height ({e!r})") from e
        if iid in images:
            raise PrepareError(f"{ann_file}: image id {iid} appears twice")
        path = image_dir / fn
        _check_image(path, W, H, ann_file, check_images)
        images[iid] = Entry(path.relative_to(root).as_posix(), W, H, [], iid if keep_ids else None)
    for a in data["annotations"]:
        aid = a.get("id", "?")
        img = images.get(a.get("image_id"))
        if img is None:
            raise PrepareError(f"{ann_file}: annotation {aid}: unknown image_id {a.get('image_id')!r}")
        if a.get("category_id") not in remap:
            raise PrepareError(f"{ann_file}: annotation {aid}: unknown category_id {a.get('category_id')!r}")
        bbox = a.get("bbox")
        if not (isinstance(bbox, list) and len(bbox) == 4 and all(map(_finite, bbox))):
            raise PrepareError(f"{ann_file}: annotation {aid}: bbox must be 4 finite numbers [x, y, w, h], "
                               f"got {bbox!r}")
        if not _finite(a.get("area", 0)):
            raise PrepareError(f"{ann_file}: annotation {aid}: area must be a finite number, got {a['area']!r}")
        x, y, w, h = bbox
        W, H = img.width, img.height
        if w < 0 or h < 0:
            raise PrepareError(f"{ann_file}: annotation {aid}: negative width/height in bbox {bbox}")
        if x >= W or y >= H or x + w <= 0 or y + h <= 0:
            raise PrepareError(f"{ann_file}: annotation {aid}: bbox {bbox} lies outside the "
                               f"{W}x{H} image {img.file_name}")
        if x < 0 or y < 0 or x + w > W or y + h > H:
            if strict:
                raise PrepareError(f"{ann_file}: annotation {aid}: bbox {bbox} extends outside the "
                                   f"{W}x{H} image {img.file_name}")
            x1, y1, x2, y2 = max(x, 0), max(y, 0), min(x + w, W), min(y + h, H)
            x, y, w, h = x1, y1, x2 - x1, y2 - y1
            report.clipped.append(f"{ann_file.name}: annotation {aid} {bbox} -> {[_tidy(v) for v in (x, y, w, h)]}")
        if w < 1 or h < 1:
            report.dropped.append(f"{ann_file.name}: annotation {aid} bbox {bbox} (< 1 px)")
            continue
        out = {"category_id": remap[a["category_id"]], "bbox": [_tidy(v) for v in (x, y, w, h)],
               "area": _tidy(a.get("area", w * h)), "iscrowd": int(a.get("iscrowd", 0))}
        if keep_ids and isinstance(a.get("id"), int):
            out["id"] = a["id"]
        out.update({k: a[k] for k in extra_keys if k in a})
        img.anns.append(out)
    return list(images.values())


#: ``(report, strict, check_images) -> entries`` of one listing (a VOC image set, a COCO JSON).
Reader = Callable[[Report, bool, bool], list[Entry]]


@dataclass(frozen=True)
class Source:
    """Part of a split: the entries ``read`` returns (read once per ``listing``), narrowed by ``pick``."""

    name: str  # as recorded in the split's ``sources``
    listing: str
    read: Reader
    pick: Callable[[list[Entry]], list[Entry]] = list


def _coco_dir(root: Path) -> Path:
    return root / "coco" if (root / "coco" / "annotations").is_dir() else root


def _name_in(entry: Entry, root: Path, image_dir: Path) -> str:
    """``entry``'s file name relative to ``image_dir`` (COCO's own ``file_name``)."""
    return (root / entry.file_name).relative_to(image_dir).as_posix()


def holdout_key(file_name: str) -> str:
    """Sort key of the COCO val hold-out: ``md5(f"coco-val-holdout:{file_name}")`` (hex)."""
    return hashlib.md5(f"coco-val-holdout:{file_name}".encode()).hexdigest()


def hold_out(entries: Sequence[Entry], n: int, root: Path, image_dir: Path,
             listing: Path) -> tuple[list[Entry], list[Entry]]:
    """``(rest, held)``: ``held`` = the ``n`` entries with the smallest ``holdout_key`` of their name
    relative to ``image_dir``, ``rest`` the others, both in their original order; too few entries are
    an error naming ``listing``."""
    if len(entries) < n + 1:
        raise PrepareError(f"{listing}: val_holdout = {n} needs at least {n + 1} train2017 images "
                           f"(train keeps the rest), found {len(entries)}")
    order = sorted(range(len(entries)), key=lambda i: holdout_key(_name_in(entries[i], root, image_dir)))
    held = set(order[:n])
    return ([e for i, e in enumerate(entries) if i not in held], [e for i, e in enumerate(entries) if i in held])


def _sources(dataset: str, root: Path, val_holdout: int = VAL_HOLDOUT) -> dict[str, list[Source]]:
    """split -> the sources it is made of."""
    def voc(year, imageset):
        name = f"VOC{year} {imageset}"
        return Source(name, name, partial(read_voc, root, year, imageset))

    def coco(split):
        cdir = _coco_dir(root)
        name = f"COCO {split}2017"
        return Source(name, name, partial(read_coco, root, cdir / "annotations" / f"instances_{split}2017.json",
                                          cdir / f"{split}2017", class_names("coco2017")))

    def synth(split):
        return Source(f"synth {split}", f"synth {split}",
                      partial(read_coco, root, root / "annotations" / f"{split}.json", root,
                              SYNTH_CLASSES, keep_ids=False, extra_keys=("visible",)))

    if dataset == "synth":
        return {s: [synth(s)] for s in SPLITS}
    if dataset == "voc2007":
        return {"train": [voc("2007", "train")], "val": [voc("2007", "val")], "test": [voc("2007", "test")]}
    if dataset == "voc0712":
        return {"train": [voc("2007", "train"), voc("2012", "trainval")],
                "val": [voc("2007", "val")], "test": [voc("2007", "test")]}
    if dataset == "coco2017":
        train = coco("train")
        divide = partial(hold_out, n=val_holdout, root=root, image_dir=_coco_dir(root) / "train2017",
                        listing=_coco_dir(root) / "annotations" / "instances_train2017.json")
        return {"train": [replace(train, name=f"{train.name} less val_holdout ({val_holdout})",
                                  pick=lambda es: divide(es)[0])],
                "val": [replace(train, name=f"{train.name} val_holdout ({val_holdout})",
                                pick=lambda es: divide(es)[1])],
                "test": [coco("val")]}
    raise KeyError(f"unknown dataset {dataset!r}; expected one of {', '.join(DATASETS)}")


def _md5_file(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "md5").hexdigest()


def check_disjoint(splits: Mapping[str, Sequence[Entry]], root: Path) -> int:
    """Raise ``PrepareError`` naming both splits and a few examples if two splits share an image: the
    same ``file_name``, or the same bytes (md5 of files whose size occurs in two splits). Returns the
    number of files hashed."""
    names = {s: sorted({e.file_name for e in es}) for s, es in splits.items()}
    for a, b in combinations(splits, 2):
        common = sorted(set(names[a]) & set(names[b]))
        if common:
            raise PrepareError(f"splits {a} and {b} share {len(common)} image(s) by file_name, e.g. "
                               f"{', '.join(common[:_FEW])} (under {root})")
    sizes = {s: {f: (root / f).stat().st_size for f in fs} for s, fs in names.items()}
    splits_of_size = Counter(size for by_file in sizes.values() for size in set(by_file.values()))
    seen: dict[str, tuple[str, str]] = {}  # md5 -> (split, file_name) first seen
    clashes: dict[tuple[str, str], list[str]] = {}
    hashed = 0
    for s, by_file in sizes.items():
        for f, size in by_file.items():
            if splits_of_size[size] < 2:
                continue
            hashed += 1
            first_split, first = seen.setdefault(_md5_file(root / f), (s, f))
            if first_split != s:
                clashes.setdefault((first_split, s), []).append(f"{first} = {f}")
    if clashes:
        (a, b), examples = next(iter(clashes.items()))
        raise PrepareError(f"splits {a} and {b} share {len(examples)} image(s) by content (the same bytes "
                           f"under two names), e.g. {'; '.join(examples[:_FEW])} (under {root})")
    return hashed


def subset_order(entries: Sequence[Entry], n: int | None, seed: int) -> list[Entry]:
    """The first ``n`` entries by ``md5(f"{seed}:{file_name}")``, in their original order."""
    if n is None or n >= len(entries):
        return list(entries)
    if n < 0:
        raise ValueError(f"subset must be >= 0, got {n}")
    keyed = sorted(range(len(entries)),
                   key=lambda i: hashlib.md5(f"{seed}:{entries[i].file_name}".encode()).hexdigest())
    return [entries[i] for i in sorted(keyed[:n])]


def to_coco(entries: Sequence[Entry], classes: Sequence[str], info: dict[str, Any]) -> dict[str, Any]:
    """A COCO detection dict; ids are kept where the entries carry them, else 1..n."""
    images, anns = [], []
    seen_files: set[str] = set()
    keep_image_ids = all(e.image_id is not None for e in entries)
    keep_ann_ids = keep_image_ids and all("id" in a for e in entries for a in e.anns)
    for i, e in enumerate(entries, 1):
        if e.file_name in seen_files:
            raise PrepareError(f"{e.file_name}: listed twice in the {info.get('split')} split")
        seen_files.add(e.file_name)
        iid = e.image_id if keep_image_ids else i
        images.append({"id": iid, "file_name": e.file_name, "width": e.width, "height": e.height})
        for a in e.anns:
            ann = {"id": a["id"] if keep_ann_ids else len(anns) + 1, "image_id": iid}
            ann.update({k: v for k, v in a.items() if k != "id"})
            anns.append(ann)
    cats = [{"id": k + 1, "name": n, "supercategory": "none"} for k, n in enumerate(classes)]
    return {"info": info, "licenses": [], "categories": cats, "images": images, "annotations": anns}


def check_with_pycocotools(path: Path, data: dict[str, Any]) -> None:
    """Load ``path`` with pycocotools and compare the counts with ``data``."""
    from pycocotools.coco import COCO

    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO(str(path))
    got = (len(coco.getImgIds()), len(coco.getAnnIds()), len(coco.getCatIds()))
    want = (len(data["images"]), len(data["annotations"]), len(data["categories"]))
    if got != want:
        raise PrepareError(f"{path}: pycocotools reads {got} (images, annotations, categories), "
                           f"expected {want}; duplicate ids?")


def split_summary(data: dict[str, Any], classes: Sequence[str], sources: list[str]) -> dict[str, Any]:
    anns = data["annotations"]
    counts = Counter(a["category_id"] for a in anns)
    with_boxes = {a["image_id"] for a in anns}
    return {"sources": sources, "images": len(data["images"]), "annotations": len(anns),
            "ignored": sum(1 for a in anns if a["iscrowd"]),
            "empty_images": sum(1 for im in data["images"] if im["id"] not in with_boxes),
            "per_class": {n: counts[k] for k, n in enumerate(classes, 1)}}


def prepare(dataset: str, root: str | os.PathLike, out: str | os.PathLike, subset: int | None = None,
            seed: int = 0, strict: bool = False, check_images: bool = True, val_holdout: int | None = None,
            log: Callable[[str], None] = print) -> dict[str, Any]:
    """Write ``out/{train,val,test}.json``, ``out/summary.json`` and, for coco2017,
    ``out/val_holdout.txt``; return the summary.

    ``val_holdout``: train2017 images held out as coco2017's val split (None: ``VAL_HOLDOUT``); other
    datasets have their own val split and refuse it. ``out`` is built in a temporary folder beside it
    and renamed into place; an existing non-empty ``out`` without a ``summary.json`` is refused.
    """
    root, out = Path(root), Path(out)
    classes = class_names(dataset)  # KeyError for an unknown dataset
    if val_holdout is not None and dataset != "coco2017":
        raise PrepareError(f"val_holdout applies to coco2017 only ({dataset} has its own val split), "
                           f"got val_holdout = {val_holdout}")
    n_held = VAL_HOLDOUT if val_holdout is None else val_holdout
    if isinstance(n_held, bool) or not isinstance(n_held, int) or n_held < 1:
        raise PrepareError(f"val_holdout must be a whole number >= 1, got {n_held!r}")
    if not root.is_dir():
        raise PrepareError(f"{root}: --root is not a folder")
    if out.exists() and any(out.iterdir()) and not (out / "summary.json").is_file():
        raise FileExistsError(f"{out}: exists, is not empty and holds no summary.json; "
                              "refusing to replace it (choose another --out)")
    report = Report()
    cache: dict[str, list[Entry]] = {}
    sources = _sources(dataset, root, n_held)
    full: dict[str, list[Entry]] = {}
    for split, parts in sources.items():
        full[split] = []
        for src in parts:
            if src.listing not in cache:
                log(f"{dataset}: reading {src.listing}")
                cache[src.listing] = src.read(report, strict, check_images)
            full[split] += src.pick(cache[src.listing])
    hashed = check_disjoint(full, root)
    log(f"  splits disjoint by file_name and by content ({hashed} files of a size shared by two splits hashed)")
    holdout = None
    if dataset == "coco2017":
        held = sorted(_name_in(e, root, _coco_dir(root) / "train2017") for e in full["val"])
        holdout = {"images": n_held, "rule": HOLDOUT_RULE, "listed_in": "val_holdout.txt"}
    summary: dict[str, Any] = {"dataset": dataset, "classes": list(classes), "subset": subset, "seed": seed,
                               "box_policy": ("partly outside the image: error" if strict else
                                              "partly outside the image: clipped and counted")
                               + "; entirely outside or empty: error",
                               "val_holdout": holdout, "splits_disjoint": True,
                               "disjoint_check": {"rule": DISJOINT_RULE, "files_hashed": hashed,
                                                  "images": {s: len(es) for s, es in full.items()}},
                               "splits": {}}
    with atomic_path(out) as tmp:
        tmp.mkdir()
        for split, entries in full.items():
            names = [src.name for src in sources[split]]
            info = {"description": f"lossbench prepare: {dataset} {split}", "dataset": dataset,
                    "split": split, "sources": names, "subset": subset, "seed": seed}
            data = to_coco(subset_order(entries, subset, seed), classes, info)
            path = tmp / f"{split}.json"
            atomic_write_json(path, data, indent=None)
            check_with_pycocotools(path, data)
            s = summary["splits"][split] = split_summary(data, classes, names)
            log(f"  {split}: {s['images']} images, {s['annotations']} boxes "
                f"({s['ignored']} ignored), {s['empty_images']} without boxes")
        if holdout is not None:
            atomic_write_text(tmp / "val_holdout.txt", "".join(f"{f}\n" for f in held))
        summary.update(clipped_boxes=len(report.clipped), clipped_examples=report.clipped[:_MAX_EXAMPLES],
                       dropped_tiny_boxes=len(report.dropped), dropped_examples=report.dropped[:_MAX_EXAMPLES])
        atomic_write_json(tmp / "summary.json", summary)
    if report.clipped or report.dropped:
        log(f"  clipped {len(report.clipped)} boxes to their image, dropped {len(report.dropped)} "
            f"boxes < 1 px (see {out / 'summary.json'})")
    log(f"wrote {out}/{{train,val,test}}.json (file_name relative to {root})")
    return summary
