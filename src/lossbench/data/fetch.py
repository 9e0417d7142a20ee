"""Download PASCAL VOC and COCO 2017 from their official addresses, verified.

Downloads resume (``ROOT/downloads/NAME.part``, a ``Range`` request) and retry with back-off (:func:`download`); every
archive, one already downloaded included, is md5-checked before any is opened (a mismatch: ``ChecksumError``, the file
renamed ``NAME.bad``, nothing extracted); archives are unpacked into ``ROOT/.lossbench-tmp-*``, the dataset folder
renamed into place and marked by ``ROOT/.lossbench-fetch-DATASET.json``, so fetching again does no network work; disk
space is checked up front (``DiskSpaceError``). Details and their tests: docs/reliability.md.

A mirror (``LOSSBENCH_MIRROR``) replaces each file's base address and keeps its relative path.
The file tables are arguments of every function here (tests pass their own).
"""

from __future__ import annotations

import email.utils
import hashlib
import os
import shutil
import tarfile
import time
import zipfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from lossbench.utils import atomic_write_json, read_json

VOC_BASE = "https://thor.robots.ox.ac.uk/pascal/VOC/"
COCO_BASE = "http://images.cocodataset.org/"
MIRROR_ENV = "LOSSBENCH_MIRROR"
CHUNK = 1 << 20  # bytes per read / write


class FetchError(RuntimeError):
    """A download or extraction failed; the message says which file and why."""


class ChecksumError(FetchError):
    """A downloaded file's md5 differs from the table."""


class DiskSpaceError(FetchError):
    """Not enough free space under the data root."""


class HTTPStatusError(FetchError):
    """The server answered with a client error (4xx): retrying will not help."""


class _ShortRead(FetchError):
    """The body ended before ``Content-Length`` (a dropped connection)."""


@dataclass(frozen=True)
class RemoteFile:
    """One archive: ``base + path`` is its official address."""

    path: str  # relative to the base (kept when a mirror replaces it)
    md5: str
    size: int  # bytes, for the disk check when ``HEAD`` gives none
    base: str  # official base address, ends with ``/``

    @property
    def name(self) -> str:
        return self.path.rsplit("/", 1)[-1]

    def url(self, mirror: str | None = None) -> str:
        return (mirror.rstrip("/") + "/" if mirror else self.base) + self.path


@dataclass(frozen=True)
class DatasetSpec:
    """A dataset = archives that, extracted together, form one folder."""

    name: str
    files: tuple[RemoteFile, ...]
    target: str  # the folder it occupies, relative to the data root
    # sub-folder of the temporary folder the archives are extracted into: VOC tars carry
    # ``VOCdevkit/VOC2007/`` themselves, COCO zips ``train2017/``, ``annotations/``...
    extract_to: str = ""


DATASETS: dict[str, DatasetSpec] = {
    "voc2007": DatasetSpec("voc2007", (
        RemoteFile("voc2007/VOCtrainval_06-Nov-2007.tar", "c52e279531787c972589f7e41ab4ae64", 460_032_000, VOC_BASE),
        RemoteFile("voc2007/VOCtest_06-Nov-2007.tar", "b6e924de25625d8de591ea690078ad9f", 451_020_800, VOC_BASE),
    ), target="VOCdevkit/VOC2007"),
    "voc2012": DatasetSpec("voc2012", (
        RemoteFile("voc2012/VOCtrainval_11-May-2012.tar", "6cd6e144f989b92b3379bac3b3de84fd", 1_999_639_040, VOC_BASE),
    ), target="VOCdevkit/VOC2012"),
    "coco2017": DatasetSpec("coco2017", (
        RemoteFile("zips/train2017.zip", "cced6f7f71b7629ddf16f17bbcfab6b2", 19_336_861_798, COCO_BASE),
        RemoteFile("zips/val2017.zip", "442b8da7639aecaf257c1dceb8ba8c80", 815_585_330, COCO_BASE),
        RemoteFile("annotations/annotations_trainval2017.zip", "f4bbac642086de4f52a3fdda2de5fa2c", 252_907_541, COCO_BASE),
    ), target="coco", extract_to="coco")}
#: names that stand for several datasets.
ALIASES: dict[str, tuple[str, ...]] = {"voc0712": ("voc2007", "voc2012")}
NAMES: tuple[str, ...] = (*DATASETS, *ALIASES)


def expand(name: str, specs: Mapping[str, DatasetSpec] = DATASETS) -> list[DatasetSpec]:
    """The specs ``name`` stands for (an alias gives several)."""
    names = ALIASES.get(name, (name,))
    missing = [n for n in names if n not in specs]
    if missing:
        raise KeyError(f"unknown dataset {name!r}; expected one of {', '.join(sorted(set(specs) | set(ALIASES)))}")
    return [specs[n] for n in names]


def marker_path(root: str | os.PathLike, name: str) -> Path:
    """The file that says dataset ``name`` under ``root`` is complete and verified."""
    return Path(root) / f".lossbench-fetch-{name}.json"


def is_fetched(root: str | os.PathLike, spec: DatasetSpec) -> bool:
    """True when ``spec``'s marker lists exactly its md5s and its folder exists."""
    marker = marker_path(root, spec.name)
    if not marker.is_file() or not (Path(root) / spec.target).is_dir():
        return False
    try:
        done = read_json(marker)
    except (OSError, ValueError):
        return False
    want = {f.name: f.md5 for f in spec.files}
    return {f["name"]: f["md5"] for f in done.get("files", [])} == want


def md5sum(path: str | os.PathLike, progress: bool = False) -> str:
    """md5 hex digest of a file, read in 1 MiB chunks."""
    h = hashlib.md5()
    size = os.path.getsize(path)
    with open(path, "rb") as f, _bar(size, f"md5 {Path(path).name}", progress) as bar:
        for chunk in iter(lambda: f.read(CHUNK), b""):
            h.update(chunk)
            bar.update(len(chunk))
    return h.hexdigest()


def _bar(total: int | None, desc: str, enabled: bool, initial: int = 0):
    """A tqdm byte bar (size, rate, time left); a no-op when disabled."""
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, desc=desc, unit="B", unit_scale=True,
                unit_divisor=1024, disable=not enabled, leave=False, dynamic_ncols=True)


def _human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024:
            return f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def _session(session=None):
    if session is not None:
        return session
    import requests

    s = requests.Session()
    s.headers["User-Agent"] = "lossbench-fetch/1"
    return s


def remote_size(url: str, session=None, timeout: float = 30.0) -> int | None:
    """``Content-Length`` from a ``HEAD`` request, or None if the server gives none."""
    import requests

    try:
        r = _session(session).head(url, allow_redirects=True, timeout=timeout)
        if r.status_code == 200 and r.headers.get("Content-Length", "").isdigit():
            return int(r.headers["Content-Length"])
    except requests.RequestException:
        pass
    return None


def download(url: str, dest: str | os.PathLike, md5: str, *, session=None, retries: int = 5,
             backoff: float = 1.0, timeout: float = 60.0, progress: bool = True,
             sleep: Callable[[float], None] = time.sleep, log: Callable[[str], None] = print) -> Path:
    """Download ``url`` to ``dest`` (resuming ``dest.part``) and verify its md5; return ``dest``.

    ``retries``: failed attempts in a row allowed after the first (connection errors, time-outs, 408, 429, 5xx, short
    bodies); one that takes ``dest.part`` beyond the furthest byte reached so far resets the count. ``backoff``: first
    wait, s, doubling; an answer's ``Retry-After`` (up to 600 s) is waited at least. ``timeout``: connect / read, s. An
    existing ``dest`` with the md5 is kept (no request); one with another md5 is renamed ``dest.bad``.

    Raises:
        ChecksumError: the complete download has another md5 (``dest.part`` is renamed
            ``dest.bad``; nothing else changes).
        HTTPStatusError: the server answered 4xx other than 408 / 429 (no retry).
        FetchError: it failed ``retries + 1`` times in a row; ``dest.part`` is kept for a resume.
    """
    import requests
    import urllib3

    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    if _kept(dest, md5, progress, log):
        return dest
    part = dest.with_name(dest.name + ".part")
    sess = _session(session)
    failures = 0
    best = part.stat().st_size if part.is_file() else 0  # furthest byte reached so far
    while True:
        offset = part.stat().st_size if part.is_file() else 0
        headers = {"Accept-Encoding": "identity", **({"Range": f"bytes={offset}-"} if offset else {})}
        asked = 0.0  # Retry-After of this answer, s
        try:
            with sess.get(url, headers=headers, stream=True, timeout=timeout) as r:
                if r.status_code == 416 and offset:  # "bytes */TOTAL": nothing left from offset
                    total = r.headers.get("Content-Range", "").rpartition("/")[2]
                    if total.isdigit() and int(total) != offset:  # .part longer than the file: stale
                        part.unlink()
                        raise _ShortRead(f"{part} ({offset} bytes) does not fit a {total}-byte file")
                    break  # .part is complete
                if 400 <= r.status_code < 500 and r.status_code not in (408, 429):
                    raise HTTPStatusError(f"{url}: HTTP {r.status_code} {r.reason}")
                if r.status_code not in (200, 206):  # 408, 429, 5xx: retried
                    asked = _retry_after(r)
                    raise _ShortRead(f"{url}: HTTP {r.status_code} {r.reason}")
                if r.status_code == 200 or not r.headers.get("Content-Range", "").startswith(f"bytes {offset}-"):
                    offset = 0  # the server sent the whole file: start over
                length = r.headers.get("Content-Length")
                expected = offset + int(length) if length and length.isdigit() else None
                with open(part, "r+b" if offset else "wb") as f, \
                        _bar(expected, dest.name, progress, initial=offset) as bar:
                    f.seek(offset)
                    f.truncate()
                    for chunk in _body_chunks(r):
                        f.write(chunk)
                        bar.update(len(chunk))
                    end = f.tell()
                if expected is not None and end < expected:
                    raise _ShortRead(f"connection closed after {end} of {expected} bytes")
            break
        except (requests.RequestException, urllib3.exceptions.HTTPError, _ShortRead) as e:
            reached = part.stat().st_size if part.is_file() else 0
            best, failures = (reached, 1) if reached > best else (best, failures + 1)
            if failures > retries:
                raise FetchError(f"{url}: giving up after {failures} failed attempts without progress "
                                 f"beyond byte {best} ({e}); {part} holds {reached} bytes and the next "
                                 "run resumes from there") from e
            wait = max(backoff * 2 ** (failures - 1), asked)
            log(f"{dest.name}: {type(e).__name__}: {e}; resuming in {wait:.1f} s")
            sleep(wait)
    actual = md5sum(part, progress)
    if actual != md5:
        bad = dest.with_name(dest.name + ".bad")
        part.replace(bad)
        raise ChecksumError(f"{dest.name}: md5 mismatch: expected {md5}, got {actual} (from {url}; moved to {bad}; "
                            "nothing was extracted; run fetch again to download it afresh)")
    part.replace(dest)
    return dest


def _kept(dest: Path, md5: str, progress: bool, log: Callable[[str], None]) -> bool:
    """True when ``dest`` exists with ``md5``; one with another md5 is renamed ``.bad``."""
    if not dest.is_file():
        return False
    actual = md5sum(dest, progress)
    if actual == md5:
        return True
    bad = dest.with_name(dest.name + ".bad")
    dest.replace(bad)
    log(f"{dest.name}: md5 {actual} is not the expected {md5}; moved to {bad}, downloading it again")
    return False


def _retry_after(r) -> float:
    """Seconds an answer's ``Retry-After`` asks for (delay or HTTP date; at most 600); 0 when absent."""
    value = r.headers.get("Retry-After", "").strip()
    try:
        secs = float(value) if value.isdigit() else \
            (email.utils.parsedate_to_datetime(value) - datetime.now(UTC)).total_seconds()
    except (TypeError, ValueError):  # absent, malformed or a date without a zone
        return 0.0
    return min(max(secs, 0.0), 600.0)


def _body_chunks(r) -> Iterator[bytes]:
    """The body as it arrives: ``read1`` hands over every byte received before a drop
    (``iter_content`` would lose the last, partly read chunk)."""
    raw = r.raw
    if not hasattr(raw, "read1"):  # urllib3 < 2.1
        yield from r.iter_content(CHUNK)
        return
    while chunk := raw.read1(CHUNK, decode_content=True):
        yield chunk


def extract(archive: str | os.PathLike, into: str | os.PathLike, progress: bool = True) -> None:
    """Unpack a ``.tar`` / ``.tar.gz`` / ``.zip`` into ``into`` (no path escapes).

    Tar members pass tarfile's ``filter='data'`` (no absolute or escaping paths or links, no device
    files); a zip member with an absolute or ``..`` path is refused. Any failure, a full disk
    included, is a ``FetchError`` naming the archive and the member.
    """
    archive, into = Path(archive), Path(into)
    into.mkdir(parents=True, exist_ok=True)
    from tqdm import tqdm

    def members(items):
        return tqdm(items, desc=f"extract {archive.name}", unit="file", disable=not progress, leave=False)

    name = None
    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as z:
                for m in members(z.infolist()):
                    name = m.filename
                    if Path(name).is_absolute() or ".." in Path(name).parts:
                        raise FetchError(f"{archive.name}: refusing unsafe member path {name!r}")
                    z.extract(m, into)
        elif tarfile.is_tarfile(archive):
            with tarfile.open(archive) as t:
                for m in members(t):
                    name = m.name
                    t.extract(m, into, filter="data")
        else:
            raise FetchError(f"{archive}: neither a tar nor a zip archive")
    except (tarfile.TarError, zipfile.BadZipFile, OSError) as e:
        raise FetchError(f"{archive.name}: cannot extract member {name!r} into {into}: {type(e).__name__}: {e}") from e


def fetch(name: str, root: str | os.PathLike, mirror: str | None = None, *,
          specs: Mapping[str, DatasetSpec] = DATASETS, session=None, retries: int = 5,
          backoff: float = 1.0, timeout: float = 60.0, progress: bool = True,
          keep_archives: bool = False, sleep: Callable[[float], None] = time.sleep,
          log: Callable[[str], None] = print) -> list[dict[str, Any]]:
    """Fetch dataset ``name`` (or an alias such as ``voc0712``) under ``root``; archives go to
    ``root/downloads`` and are deleted after extraction unless ``keep_archives``. ``mirror`` defaults
    to ``$LOSSBENCH_MIRROR``, else the official address. Returns one dict per dataset: ``name``,
    ``status`` (``"fetched"`` or ``"already present"``), ``target``."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    if mirror is None:
        mirror = os.environ.get(MIRROR_ENV) or None
    dl = dict(session=_session(session), retries=retries, backoff=backoff, timeout=timeout,
              progress=progress, sleep=sleep, log=log)  # download()'s options
    results = []
    for spec in expand(name, specs):
        done = is_fetched(root, spec)
        if done:
            log(f"{spec.name}: already fetched and verified under {root / spec.target} "
                f"({marker_path(root, spec.name).name}); nothing to do")
        else:
            _fetch_one(spec, root, mirror, keep_archives, dl)
        results.append({"name": spec.name, "status": "already present" if done else "fetched", "target": spec.target})
    return results


def _fetch_one(spec: DatasetSpec, root: Path, mirror: str | None, keep_archives: bool, dl: dict[str, Any]) -> None:
    progress, log = dl["progress"], dl["log"]
    downloads = root / "downloads"
    downloads.mkdir(parents=True, exist_ok=True)
    tmp = root / f".lossbench-tmp-{spec.name}"
    if tmp.exists():
        shutil.rmtree(tmp)  # left by an interrupted run; its space is free for the check below
    # -- disk space: what is left to download + the extracted copy (~ archive size). An archive already downloaded
    # counts only once its md5 matches (else it is set aside and fetched again); the unverified old folder is deleted
    # only after extraction, so it frees nothing.
    need_dl = need_x = 0
    kept = set()  # archives already downloaded and verified
    for f in spec.files:
        dest = downloads / f.name
        if _kept(dest, f.md5, progress, log):
            kept.add(f.name)
            need_x += dest.stat().st_size
            continue
        size = remote_size(f.url(mirror), dl["session"], dl["timeout"]) or f.size
        part = dest.with_name(dest.name + ".part")
        need_dl += max(size - (part.stat().st_size if part.is_file() else 0), 0)
        need_x += size
    needed = int((need_dl + need_x) * 1.02) + (64 << 20)
    if (have := shutil.disk_usage(root).free) < needed:
        raise DiskSpaceError(f"{root}: {spec.name} ({_human(need_dl)} to download, ~{_human(need_x)} extracted) "
                             f"needs {_human(needed)} free, only {_human(have)} is available; free some space "
                             "or choose another --root")
    # -- download and verify every archive before extracting any
    paths = [downloads / f.name for f in spec.files]
    for f, p in zip(spec.files, paths):
        if f.name not in kept:
            log(f"{spec.name}: {f.name} <- {f.url(mirror)}")
            download(f.url(mirror), p, f.md5, **dl)
    # -- extract into a temporary folder beside the target, then rename
    try:
        for p in paths:
            log(f"{spec.name}: extracting {p.name}")
            extract(p, tmp / spec.extract_to, progress)
        built = tmp / spec.target
        if not built.is_dir():
            raise FetchError(f"{spec.name}: the archives ({', '.join(p.name for p in paths)}) "
                             f"did not produce {spec.target}/; is the mirror serving the right files?")
        final = root / spec.target
        final.parent.mkdir(parents=True, exist_ok=True)
        if final.exists():  # no marker: an untrusted leftover
            log(f"{spec.name}: replacing unverified {final}")
            shutil.rmtree(final)
        os.replace(built, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    atomic_write_json(marker_path(root, spec.name), {
        "dataset": spec.name, "target": spec.target,
        "files": [{"name": f.name, "path": f.path, "md5": f.md5} for f in spec.files]})
    if not keep_archives:
        for p in paths:
            p.unlink()
    log(f"{spec.name}: ready in {root / spec.target}")
