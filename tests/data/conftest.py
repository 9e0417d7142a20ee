"""Fixtures of the data tests: a local HTTP file server and fabricated VOC / COCO sets.

Nothing here reaches the internet: the server listens on 127.0.0.1 (port 0)
in a thread, and the archives are built in memory in the real layouts
(``VOCdevkit/VOC2007/...`` tars, COCO ``train2017.zip`` / ``val2017.zip`` /
``annotations_trainval2017.zip``).
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
import threading
import zipfile
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from PIL import Image

from lossbench.data.classes import class_names

# ----------------------------------------------------------------------------
# HTTP server
# ----------------------------------------------------------------------------

@dataclass
class FileServer:
    """State of the test server; tests change it between requests.

    files: URL path ("/voc2007/x.tar") -> body.
    drop: URL path -> number of coming GETs that send half their body and
        then close the connection (with the full Content-Length announced).
    corrupt: URL paths served with every 1000th byte flipped.
    ignore_range: URL paths whose GETs ignore ``Range`` (200, whole body).
    answers: URL path -> (status, headers) answers given, in order, to the
        coming GETs instead of the file (e.g. ``(429, {"Retry-After": "1"})``).
    log: (method, path, Range header or None) of every request, in order.
    headers: the request headers of every request, in order.
    """

    url: str = ""
    files: dict[str, bytes] = field(default_factory=dict)
    drop: dict[str, int] = field(default_factory=dict)
    corrupt: set[str] = field(default_factory=set)
    ignore_range: set[str] = field(default_factory=set)
    answers: dict[str, list[tuple[int, dict[str, str]]]] = field(default_factory=dict)
    log: list[tuple[str, str, str | None]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def gets(self, path: str | None = None) -> list[tuple[str, str, str | None]]:
        return [r for r in self.log if r[0] == "GET" and (path is None or r[1] == path)]


def _make_handler(state: FileServer):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.0"  # one request per connection: a drop is a real close

        def log_message(self, *args):  # keep pytest output clean
            pass

        def _body(self) -> bytes | None:
            body = state.files.get(self.path)
            if body is not None and self.path in state.corrupt:
                b = bytearray(body)
                for i in range(0, len(b), 1000):
                    b[i] ^= 0xFF
                body = bytes(b)
            return body

        def do_HEAD(self):
            with state.lock:
                state.log.append(("HEAD", self.path, self.headers.get("Range")))
                state.headers.append(dict(self.headers))
            body = self._body()
            if body is None:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Accept-Ranges", "bytes")
            self.end_headers()

        def do_GET(self):
            rng = self.headers.get("Range")
            with state.lock:
                state.log.append(("GET", self.path, rng))
                state.headers.append(dict(self.headers))
                drop = state.drop.get(self.path, 0) > 0
                if drop:
                    state.drop[self.path] -= 1
                answer = state.answers.get(self.path, []) and state.answers[self.path].pop(0)
            if answer:
                self.send_response(answer[0])
                for k, v in {"Content-Length": "0", **answer[1]}.items():
                    self.send_header(k, v)
                self.end_headers()
                return
            if self.path in state.ignore_range:
                rng = None
            body = self._body()
            if body is None:
                self.send_error(404)
                return
            start = 0
            if rng:
                start = int(rng.split("=")[1].split("-")[0])
                if start >= len(body):
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{len(body)}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
            else:
                self.send_response(200)
            part = body[start:]
            self.send_header("Content-Length", str(len(part)))
            self.send_header("Accept-Ranges", "bytes")
            self.end_headers()
            if drop:
                self.wfile.write(part[: len(part) // 2])
                self.wfile.flush()
                self.close_connection = True
                return
            self.wfile.write(part)

    return Handler


@pytest.fixture
def http_server():
    """A ``FileServer`` serving on http://127.0.0.1:PORT until the test ends."""
    state = FileServer()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _make_handler(state))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


# ----------------------------------------------------------------------------
# Fabricated VOC
# ----------------------------------------------------------------------------

def jpeg_bytes(w: int, h: int, colour=(90, 120, 150)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (w, h), colour).save(buf, "JPEG", quality=80)
    return buf.getvalue()


def voc_xml(w: int, h: int, objects: list[tuple]) -> str:
    """objects: (name, xmin, ymin, xmax, ymax[, difficult])."""
    objs = "".join(
        f"<object><name>{o[0]}</name><pose>Unspecified</pose><truncated>0</truncated>"
        f"<difficult>{o[5] if len(o) > 5 else 0}</difficult><bndbox><xmin>{o[1]}</xmin>"
        f"<ymin>{o[2]}</ymin><xmax>{o[3]}</xmax><ymax>{o[4]}</ymax></bndbox></object>"
        for o in objects)
    return (f"<annotation><folder>VOC</folder><size><width>{w}</width><height>{h}</height>"
            f"<depth>3</depth></size>{objs}</annotation>")


#: year -> image set -> image id -> (width, height, objects); the sets are disjoint
#: (trainval = train + val is written from them), as in VOC's ImageSets/Main.
VOC_CONTENT = {
    "2007": {
        "train": {"000005": (64, 48, [("chair", 10, 20, 50, 40), ("chair", 2, 3, 8, 9, 1)])},
        "val": {"000007": (40, 30, [("car", 1, 1, 40, 30)])},
        "test": {
            "000001": (50, 60, [("dog", 5, 6, 25, 30), ("person", 30, 1, 50, 60)]),
            "000002": (30, 30, [("train", 3, 3, 12, 12, 1)]),
        },
    },
    "2012": {
        "train": {"2008_000008": (70, 50, [("horse", 11, 12, 61, 42), ("person", 20, 5, 30, 45)])},
        "val": {"2008_000015": (36, 44, [("bird", 4, 6, 20, 30)])},
    },
}

#: (year, archive) -> the image sets of VOC_CONTENT the archive holds; a ``trainval``
#: archive also lists ``trainval.txt`` (its sets' ids, sorted).
VOC_ARCHIVES = {("2007", "trainval"): ("train", "val"), ("2007", "test"): ("test",),
                ("2012", "trainval"): ("train", "val")}


def image_colour(key: str) -> tuple[int, int, int]:
    """A colour of its own per image name, so that no two fabricated images share their bytes."""
    d = hashlib.md5(key.encode()).digest()
    return d[0], d[1], d[2]


def voc_members(year: str, archive: str, content=None) -> dict[str, bytes]:
    """Archive members (path -> bytes) of one VOC tar in the real layout:
    ``ImageSets/Main/{set}.txt`` for each set of ``VOC_ARCHIVES[(year, archive)]`` (and
    ``trainval.txt`` for a trainval archive), ``Annotations/*.xml``, ``JPEGImages/*.jpg``.
    ``content`` (image id -> (width, height, objects)) replaces them all by one
    ``{archive}.txt``."""
    base = f"VOCdevkit/VOC{year}"
    sets = ({archive: content} if content else
            {s: VOC_CONTENT[year][s] for s in VOC_ARCHIVES[(year, archive)]})
    if not content and archive == "trainval":
        sets["trainval"] = {k: v for part in sets.values() for k, v in part.items()}
    members = {f"{base}/ImageSets/Main/{name}.txt": "".join(f"{i}\n" for i in sorted(ids)).encode()
               for name, ids in sets.items()}
    for ids in sets.values():
        for img_id, (w, h, objs) in ids.items():
            members[f"{base}/Annotations/{img_id}.xml"] = voc_xml(w, h, objs).encode()
            members[f"{base}/JPEGImages/{img_id}.jpg"] = jpeg_bytes(w, h, image_colour(f"VOC{year}/{img_id}"))
    return members


def tar_bytes(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        for name, data in sorted(members.items()):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = 0
            t.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def zip_bytes(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, data in sorted(members.items()):
            z.writestr(name, data)
    return buf.getvalue()


def write_members(root: Path, members: dict[str, bytes]) -> None:
    for name, data in members.items():
        p = root / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)


# ----------------------------------------------------------------------------
# Fabricated COCO
# ----------------------------------------------------------------------------

#: COCO 2017's official category ids: 1..90 without the 10 never annotated.
COCO_IDS = tuple(i for i in range(1, 91) if i not in (12, 26, 29, 30, 45, 66, 68, 69, 71, 83))


def coco_instances(images: list[tuple[int, str, int, int]], anns: list[dict]) -> dict:
    """A COCO instances JSON with the 80 official categories (ids 1..90)."""
    return {
        "info": {"year": 2017}, "licenses": [],
        "categories": [{"id": i, "name": n, "supercategory": "x"}
                       for i, n in zip(COCO_IDS, class_names("coco2017"), strict=True)],
        "images": [{"id": i, "file_name": f, "width": w, "height": h} for i, f, w, h in images],
        "annotations": anns,
    }


def coco_train() -> dict:
    """Six train2017 images (ids 9, 25, 30, 34, 36, 42; 36 without boxes). By
    ``md5(f"coco-val-holdout:{file_name}")`` they sort 34, 42, 36, 30, 9, 25."""
    return coco_instances(
        [(9, "000000000009.jpg", 64, 48), (25, "000000000025.jpg", 40, 40), (30, "000000000030.jpg", 48, 32),
         (34, "000000000034.jpg", 56, 40), (36, "000000000036.jpg", 32, 32), (42, "000000000042.jpg", 60, 36)],
        [
            # person (id 1 -> 1)
            {"id": 101, "image_id": 9, "category_id": 1, "bbox": [1.5, 2.0, 20.0, 30.25], "area": 400.0,
             "iscrowd": 0, "segmentation": [[1.5, 2, 21.5, 2, 21.5, 32.25]]},
            # toothbrush (id 90 -> 80), partly outside on the right: clipped to w = 64 - 50 = 14
            {"id": 102, "image_id": 9, "category_id": 90, "bbox": [50, 10, 20, 5], "area": 80.0, "iscrowd": 0,
             "segmentation": [[50, 10, 70, 10, 70, 15]]},
            # stop sign (id 13 -> 12), a crowd box
            {"id": 103, "image_id": 25, "category_id": 13, "bbox": [0, 0, 10, 10], "area": 90.0, "iscrowd": 1,
             "segmentation": {"counts": [0, 100], "size": [40, 40]}},
            # a 0.5-px-wide box: dropped and counted
            {"id": 104, "image_id": 25, "category_id": 1, "bbox": [5, 5, 0.5, 8], "area": 2.0, "iscrowd": 0,
             "segmentation": []},
            # dog (id 18 -> 17), zebra (id 24 -> 23), car (id 3 -> 3)
            {"id": 105, "image_id": 30, "category_id": 18, "bbox": [2, 3, 20, 15], "area": 250.0, "iscrowd": 0,
             "segmentation": []},
            {"id": 106, "image_id": 34, "category_id": 24, "bbox": [10, 4, 30, 30], "area": 700.0, "iscrowd": 0,
             "segmentation": []},
            {"id": 107, "image_id": 42, "category_id": 3, "bbox": [0, 6, 25, 12], "area": 280.0, "iscrowd": 0,
             "segmentation": []},
        ])


def coco_val() -> dict:
    return coco_instances([(139, "000000000139.jpg", 50, 40)], [
        {"id": 201, "image_id": 139, "category_id": 62, "bbox": [10, 10, 20, 20], "area": 300.0,
         "iscrowd": 0, "segmentation": []}])  # chair (id 62 -> 57)


def coco_members() -> dict[str, dict[str, bytes]]:
    """zip name -> members, in the real layout of the three COCO 2017 zips."""
    tr, va = coco_train(), coco_val()
    train = {f"train2017/{im['file_name']}": jpeg_bytes(im["width"], im["height"], image_colour(im["file_name"]))
             for im in tr["images"]}
    val = {f"val2017/{im['file_name']}": jpeg_bytes(im["width"], im["height"], image_colour(im["file_name"]))
           for im in va["images"]}
    ann = {"annotations/instances_train2017.json": json.dumps(tr).encode(),
           "annotations/instances_val2017.json": json.dumps(va).encode()}
    return {"train2017.zip": train, "val2017.zip": val, "annotations_trainval2017.zip": ann}


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


@pytest.fixture
def fab():
    """The fabricators above, for the test modules (no `import conftest` needed)."""
    from types import SimpleNamespace

    return SimpleNamespace(jpeg_bytes=jpeg_bytes, voc_xml=voc_xml, voc_members=voc_members,
                           VOC_CONTENT=VOC_CONTENT, VOC_ARCHIVES=VOC_ARCHIVES, tar_bytes=tar_bytes,
                           zip_bytes=zip_bytes, write_members=write_members, coco_instances=coco_instances,
                           coco_members=coco_members, md5=md5)
