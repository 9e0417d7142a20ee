"""The files of a generated set, written from a few threads while images render.

Layout written under the output folder::

    VOCdevkit/VOCsynth/JPEGImages/{split}_{i:06d}.jpg    (the only copy of the pixels)
    VOCdevkit/VOCsynth/Annotations/{split}_{i:06d}.xml   (VOC, 1-based inclusive corners)
    VOCdevkit/VOCsynth/ImageSets/Main/{train,val,test,trainval}.txt
    annotations/{train,val,test}.json                    (COCO; file_name relative to the folder)

Box conventions: a record's box ``[x0, y0, x1, y1]`` is end exclusive (``lossbench.data.synth.render``). COCO
``bbox = [x0, y0, x1 - x0, y1 - y0]``; VOC ``xmin = x0 + 1, ymin = y0 + 1, xmax = x1, ymax = y1``. So
``coco = [xmin - 1, ymin - 1, xmax - xmin + 1, ymax - ymin + 1]``, the usual VOC -> COCO rule
(``lossbench.data.prepare`` applies it to real VOC too).
"""

from __future__ import annotations

import threading
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from lossbench.data.classes import SYNTH_CLASSES
from lossbench.data.synth.render import SPLITS, ImageRecord
from lossbench.utils import atomic_write_json

VOC_FOLDER = "VOCsynth"


def _elements(parent: ET.Element, children: list[tuple[str, Any]]) -> ET.Element:
    """Append ``(tag, text or list of children)`` pairs to ``parent``, recursively."""
    for tag, value in children:
        child = ET.SubElement(parent, tag)
        if isinstance(value, list):
            _elements(child, value)
        else:
            child.text = str(value)
    return parent


def voc_xml(rec: ImageRecord) -> str:
    """The VOC annotation of ``rec`` (1-based inclusive corners), tab-indented, deterministic text."""
    objects = [("object", [("name", SYNTH_CLASSES[lab]), ("pose", "Unspecified"), ("truncated", 0),
                           ("occluded", int(vis < 0.95)), ("difficult", 0),
                           ("bndbox", [("xmin", x0 + 1), ("ymin", y0 + 1), ("xmax", x1), ("ymax", y1)])])
               for (x0, y0, x1, y1), lab, vis in zip(rec.boxes.tolist(), rec.labels.tolist(), rec.visible.tolist())]
    root = _elements(ET.Element("annotation"), [
        ("folder", VOC_FOLDER), ("filename", f"{rec.stem}.jpg"), ("source", [("database", "lossbench synth")]),
        ("size", [("width", rec.width), ("height", rec.height), ("depth", 3)]), ("segmented", 0), *objects])
    ET.indent(root, space="\t")
    return ET.tostring(root, encoding="unicode") + "\n"


def coco_dataset(records: Sequence[ImageRecord], info: dict[str, Any]) -> dict[str, Any]:
    """A COCO detection dict for ``records`` (image ids 1..n in order, category ids 1..8 in ``SYNTH_CLASSES`` order)."""
    images, anns = [], []
    for i, rec in enumerate(records, 1):
        images.append({"id": i, "file_name": f"VOCdevkit/{VOC_FOLDER}/JPEGImages/{rec.stem}.jpg",
                       "width": rec.width, "height": rec.height})
        for (x0, y0, x1, y1), lab, vis in zip(rec.boxes.tolist(), rec.labels.tolist(), rec.visible.tolist()):
            w, h = x1 - x0, y1 - y0
            anns.append({"id": len(anns) + 1, "image_id": i, "category_id": lab + 1,
                         "bbox": [x0, y0, w, h], "area": w * h, "iscrowd": 0, "visible": round(vis, 3)})
    categories = [{"id": k + 1, "name": name, "supercategory": "shape"} for k, name in enumerate(SYNTH_CLASSES)]
    return {"info": info, "licenses": [], "categories": categories, "images": images, "annotations": anns}


def write_set(root: Path, records: Iterable[ImageRecord], info: dict[str, Any],
              threads: int = 4, pending: int = 256) -> dict[str, list[ImageRecord]]:
    """Write the layout above under ``root`` and return the records by split, JPEG bytes dropped.

    Each image's JPEG and XML are written by ``threads`` threads, so that slow file creation (it blocks without the GIL)
    overlaps with rendering; at most ``pending`` files wait. ``info`` heads each COCO file (with its split).
    """
    voc = root / "VOCdevkit" / VOC_FOLDER
    for sub in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (voc / sub).mkdir(parents=True, exist_ok=True)
    (root / "annotations").mkdir()
    recs: dict[str, list[ImageRecord]] = {s: [] for s in SPLITS}
    slots, futures = threading.BoundedSemaphore(pending), []
    with ThreadPoolExecutor(threads, thread_name_prefix="synth-write") as pool:
        for rec in records:
            for path, data in ((voc / "JPEGImages" / f"{rec.stem}.jpg", rec.jpeg),
                               (voc / "Annotations" / f"{rec.stem}.xml", voc_xml(rec).encode("utf-8"))):
                slots.acquire()
                futures.append(pool.submit(path.write_bytes, data))
                futures[-1].add_done_callback(lambda _: slots.release())
            rec.jpeg = b""
            recs[rec.stem.split("_")[0]].append(rec)
    for fut in futures:
        fut.result()  # re-raise the first error
    for s in SPLITS:
        atomic_write_json(root / "annotations" / f"{s}.json", coco_dataset(recs[s], dict(info, split=s)), indent=None)
    for name, listed in {**recs, "trainval": recs["train"] + recs["val"]}.items():
        text = "".join(f"{r.stem}\n" for r in listed)
        (voc / "ImageSets" / "Main" / f"{name}.txt").write_text(text, encoding="utf-8")
    return recs
