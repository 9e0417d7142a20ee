"""lossbench.data.fetch against a local HTTP server serving fabricated archives.

Covers: success (files extracted byte for byte, marker written, archives
removed), resume after a dropped connection (Range request continues), resume
of a .part left by an interrupted run, checksum mismatch and corrupted body
(clear error, nothing extracted, bad file set aside, next run downloads afresh),
a corrupt archive already in downloads/, idempotent second run (zero
requests), disk-space check, mirror from the environment, 4xx without retries,
408/429/503 retried after Retry-After, a server that ignores Range and drops
(gives up), tar-filter and OS errors as one-line CLI errors, COCO and the
voc0712 alias.
"""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import tarfile
import time
from email.utils import formatdate
from pathlib import Path
from types import SimpleNamespace

import pytest

from lossbench.data import fetch as F

TV07 = "voc2007/VOCtrainval_06-Nov-2007.tar"
TE07 = "voc2007/VOCtest_06-Nov-2007.tar"
TV12 = "voc2012/VOCtrainval_11-May-2012.tar"
QUIET = dict(progress=False, backoff=0.001, log=lambda s: None)


def _serve_voc(server, fab, years=("2007",)) -> tuple[dict[str, F.DatasetSpec], dict[str, bytes]]:
    """Serve VOC tars in their real relative paths; return (file table, members)."""
    specs, members = {}, {}
    plan = {"2007": [(TV07, "trainval"), (TE07, "test")], "2012": [(TV12, "trainval")]}
    for year in years:
        files = []
        for rel, imageset in plan[year]:
            m = fab.voc_members(year, imageset)
            members.update(m)
            body = fab.tar_bytes(m)
            server.files["/" + rel] = body
            # base is unreachable on purpose: only the mirror may be used
            files.append(F.RemoteFile(rel, fab.md5(body), len(body), "http://official.invalid/"))
        specs[f"voc{year}"] = F.DatasetSpec(f"voc{year}", tuple(files), target=f"VOCdevkit/VOC{year}")
    return specs, members


def _assert_extracted(root: Path, members: dict[str, bytes]) -> None:
    for name, data in members.items():
        assert (root / name).read_bytes() == data, name


def _assert_nothing_extracted(root: Path) -> None:
    assert not (root / "VOCdevkit").exists()
    assert not list(root.glob(".lossbench-tmp-*"))
    assert not list(root.glob(".lossbench-fetch-*"))


def test_fetch_extracts_verifies_and_marks(http_server, fab, tmp_path):
    specs, members = _serve_voc(http_server, fab)
    out = F.fetch("voc2007", tmp_path, http_server.url, specs=specs, **QUIET)
    assert out == [{"name": "voc2007", "status": "fetched", "target": "VOCdevkit/VOC2007"}]
    _assert_extracted(tmp_path, members)
    # both tars land in the same VOC2007 folder: 2 + 2 images, both image sets
    assert sorted(p.name for p in (tmp_path / "VOCdevkit/VOC2007/JPEGImages").iterdir()) == [
        "000001.jpg", "000002.jpg", "000005.jpg", "000007.jpg"]
    marker = json.loads((tmp_path / ".lossbench-fetch-voc2007.json").read_text())
    assert {f["name"]: f["md5"] for f in marker["files"]} == {
        "VOCtrainval_06-Nov-2007.tar": fab.md5(http_server.files["/" + TV07]),
        "VOCtest_06-Nov-2007.tar": fab.md5(http_server.files["/" + TE07])}
    # archives removed after extraction, no temporary folder left
    assert list((tmp_path / "downloads").iterdir()) == []
    assert not list(tmp_path.glob(".lossbench-tmp-*"))
    assert [r[1] for r in http_server.gets()] == ["/" + TV07, "/" + TE07]


def test_second_fetch_does_no_network_work(http_server, fab, tmp_path):
    specs, _ = _serve_voc(http_server, fab)
    F.fetch("voc2007", tmp_path, http_server.url, specs=specs, **QUIET)
    assert len(http_server.log) > 0
    http_server.log.clear()
    out = F.fetch("voc2007", tmp_path, http_server.url, specs=specs, **QUIET)
    assert out[0]["status"] == "already present"
    assert http_server.log == []  # not even a HEAD


def test_marker_with_other_md5s_is_not_trusted(http_server, fab, tmp_path):
    specs, members = _serve_voc(http_server, fab)
    F.fetch("voc2007", tmp_path, http_server.url, specs=specs, **QUIET)
    marker = tmp_path / ".lossbench-fetch-voc2007.json"
    data = json.loads(marker.read_text())
    data["files"][0]["md5"] = "0" * 32
    marker.write_text(json.dumps(data))
    http_server.log.clear()
    assert F.fetch("voc2007", tmp_path, http_server.url, specs=specs, **QUIET)[0]["status"] == "fetched"
    assert len(http_server.gets()) == 2
    _assert_extracted(tmp_path, members)


def test_resume_after_dropped_connection(http_server, fab, tmp_path):
    specs, members = _serve_voc(http_server, fab)
    size = len(http_server.files["/" + TE07])
    http_server.drop["/" + TE07] = 1  # the first GET sends half the body, then closes
    F.fetch("voc2007", tmp_path, http_server.url, specs=specs, **QUIET)
    gets = http_server.gets("/" + TE07)
    assert len(gets) == 2
    assert gets[0][2] is None  # first try: whole file
    start = int(gets[1][2].removeprefix("bytes=").removesuffix("-"))
    # the second try asks only for the rest: it starts after the bytes received
    assert 0 < start <= size // 2
    _assert_extracted(tmp_path, members)


def test_resume_of_a_part_file_left_by_an_interrupted_run(http_server, fab, tmp_path):
    specs, members = _serve_voc(http_server, fab)
    body = http_server.files["/" + TV07]
    (tmp_path / "downloads").mkdir()
    (tmp_path / "downloads" / "VOCtrainval_06-Nov-2007.tar.part").write_bytes(body[:1000])
    F.fetch("voc2007", tmp_path, http_server.url, specs=specs, **QUIET)
    assert http_server.gets("/" + TV07) == [("GET", "/" + TV07, "bytes=1000-")]
    _assert_extracted(tmp_path, members)


def test_download_restarts_when_the_server_ignores_range(http_server, fab, tmp_path):
    body = b"x" * 5000 + b"y" * 5000
    http_server.files["/f.bin"] = body
    part = tmp_path / "f.bin.part"
    part.write_bytes(b"garbage!" * 10)  # 80 stale bytes

    class NoRange:  # a session that drops the Range header, as some proxies do
        import requests
        s = requests.Session()

        def get(self, url, headers=None, **kw):
            return self.s.get(url, **kw)

    F.download(http_server.url + "/f.bin", tmp_path / "f.bin", hashlib.md5(body).hexdigest(),
               session=NoRange(), progress=False, log=lambda s: None)
    assert (tmp_path / "f.bin").read_bytes() == body
    assert not part.exists()


def test_checksum_mismatch_is_a_clear_error_and_extracts_nothing(http_server, fab, tmp_path):
    specs, _ = _serve_voc(http_server, fab)
    good = specs["voc2007"].files[1]
    wrong = "0123456789abcdef0123456789abcdef"
    specs["voc2007"] = F.DatasetSpec("voc2007", (specs["voc2007"].files[0],
                                                 F.RemoteFile(good.path, wrong, good.size, good.base)),
                                     target="VOCdevkit/VOC2007")
    with pytest.raises(F.ChecksumError) as e:
        F.fetch("voc2007", tmp_path, http_server.url, specs=specs, **QUIET)
    msg = str(e.value)
    assert "VOCtest_06-Nov-2007.tar" in msg and wrong in msg and good.md5 in msg  # actual digest = the real md5
    _assert_nothing_extracted(tmp_path)
    assert not (tmp_path / "downloads/VOCtest_06-Nov-2007.tar.part").exists()
    assert (tmp_path / "downloads/VOCtest_06-Nov-2007.tar.bad").read_bytes() == http_server.files["/" + TE07]


def test_corrupted_body_is_caught_then_redownloaded_from_scratch(http_server, fab, tmp_path):
    specs, members = _serve_voc(http_server, fab)
    body = http_server.files["/" + TV07]
    http_server.corrupt.add("/" + TV07)
    flipped = bytearray(body)
    for i in range(0, len(flipped), 1000):
        flipped[i] ^= 0xFF
    with pytest.raises(F.ChecksumError) as e:
        F.fetch("voc2007", tmp_path, http_server.url, specs=specs, **QUIET)
    assert f"expected {fab.md5(body)}, got {fab.md5(bytes(flipped))}" in str(e.value)
    assert "VOCtrainval_06-Nov-2007.tar" in str(e.value)
    _assert_nothing_extracted(tmp_path)
    # the server is fixed; the next run must not resume from the bad bytes
    http_server.corrupt.clear()
    http_server.log.clear()
    F.fetch("voc2007", tmp_path, http_server.url, specs=specs, **QUIET)
    assert http_server.gets("/" + TV07) == [("GET", "/" + TV07, None)]
    _assert_extracted(tmp_path, members)


def _free(monkeypatch, free: int) -> None:
    monkeypatch.setattr(shutil, "disk_usage", lambda p: SimpleNamespace(total=2 * free, used=free, free=free))


def test_not_enough_disk_space_fails_before_downloading(http_server, fab, tmp_path, monkeypatch):
    specs, _ = _serve_voc(http_server, fab)
    _free(monkeypatch, 1000)
    with pytest.raises(F.DiskSpaceError) as e:
        F.fetch("voc2007", tmp_path, http_server.url, specs=specs, **QUIET)
    assert "needs" in str(e.value) and "1000.0 B is available" in str(e.value)
    assert http_server.gets() == []  # only HEADs for the sizes
    assert [r[0] for r in http_server.log] == ["HEAD", "HEAD"]


@pytest.mark.parametrize("leftover", ["old unverified folder", "corrupt archive in downloads"])
def test_disk_check_counts_what_is_still_on_disk_during_extraction(http_server, fab, tmp_path, monkeypatch,
                                                                   leftover):
    """Needed = (both archives to download + their extracted copy) * 1.02 + 64 MiB, by hand.
    An unverified old folder is deleted only after extraction: it frees nothing. A corrupt
    archive already in downloads/ is set aside and downloaded again: it counts as missing."""
    specs, members = _serve_voc(http_server, fab)
    a, b = (len(http_server.files["/" + r]) for r in (TV07, TE07))
    needed = int(2 * (a + b) * 1.02) + 64 * 2**20
    old = tmp_path / "VOCdevkit/VOC2007/JPEGImages/stale.jpg"
    if leftover == "old unverified folder":
        old.parent.mkdir(parents=True)
        old.write_bytes(b"\0" * 2**20)
    else:
        (tmp_path / "downloads").mkdir()
        (tmp_path / "downloads/VOCtrainval_06-Nov-2007.tar").write_bytes(b"not the archive")
    _free(monkeypatch, needed - 1)
    with pytest.raises(F.DiskSpaceError, match="only 64.0 MiB is available"):
        F.fetch("voc2007", tmp_path, http_server.url, specs=specs, **QUIET)
    assert http_server.gets() == []
    _free(monkeypatch, needed)
    F.fetch("voc2007", tmp_path, http_server.url, specs=specs, **QUIET)
    _assert_extracted(tmp_path, members)
    assert not old.exists()


def test_disk_check_counts_a_stale_temporary_folder_as_free(http_server, fab, tmp_path, monkeypatch):
    """An interrupted run's .lossbench-tmp-* is deleted before the check: its space is free then."""
    specs, members = _serve_voc(http_server, fab)
    a, b = (len(http_server.files["/" + r]) for r in (TV07, TE07))
    needed = int(2 * (a + b) * 1.02) + 64 * 2**20
    stale = tmp_path / ".lossbench-tmp-voc2007"
    stale.mkdir()
    (stale / "half.jpg").write_bytes(b"\0" * 2**20)
    monkeypatch.setattr(shutil, "disk_usage",
                        lambda p: SimpleNamespace(free=needed - 1 + (0 if stale.exists() else 2**20)))
    F.fetch("voc2007", tmp_path, http_server.url, specs=specs, **QUIET)
    _assert_extracted(tmp_path, members)


def test_archives_already_downloaded_are_verified_once_and_not_requested(http_server, fab, tmp_path,
                                                                         monkeypatch):
    specs, members = _serve_voc(http_server, fab)
    F.fetch("voc2007", tmp_path, http_server.url, specs=specs, keep_archives=True, **QUIET)
    (tmp_path / ".lossbench-fetch-voc2007.json").unlink()  # extracted, but no longer trusted
    http_server.log.clear()
    hashed = []
    md5sum = F.md5sum
    monkeypatch.setattr(F, "md5sum", lambda path, progress=False: hashed.append(Path(path).name) or md5sum(path))
    F.fetch("voc2007", tmp_path, http_server.url, specs=specs, **QUIET)
    assert http_server.log == []
    assert sorted(hashed) == ["VOCtest_06-Nov-2007.tar", "VOCtrainval_06-Nov-2007.tar"]  # once each
    _assert_extracted(tmp_path, members)


def test_corrupt_archive_already_in_downloads_is_downloaded_again_not_extracted(http_server, fab, tmp_path):
    specs, members = _serve_voc(http_server, fab)
    # a well-formed VOC tar with other contents (another image size), under the archive's name
    content = {"000005": (64, 48, [("dog", 1, 1, 9, 9)]), "000007": (40, 30, [])}
    wrong = fab.tar_bytes(fab.voc_members("2007", "trainval", content))
    (tmp_path / "downloads").mkdir()
    (tmp_path / "downloads/VOCtrainval_06-Nov-2007.tar").write_bytes(wrong)
    F.fetch("voc2007", tmp_path, http_server.url, specs=specs, **QUIET)
    assert http_server.gets("/" + TV07) == [("GET", "/" + TV07, None)]
    _assert_extracted(tmp_path, members)  # the served archive's contents, not the stale one's
    assert (tmp_path / "downloads/VOCtrainval_06-Nov-2007.tar.bad").read_bytes() == wrong


def test_mirror_from_the_environment(http_server, fab, tmp_path, monkeypatch):
    specs, members = _serve_voc(http_server, fab)
    monkeypatch.setenv("LOSSBENCH_MIRROR", http_server.url + "/")
    F.fetch("voc2007", tmp_path, specs=specs, **QUIET)
    _assert_extracted(tmp_path, members)
    assert {r[1] for r in http_server.gets()} == {"/" + TV07, "/" + TE07}


def test_missing_file_is_an_http_error_without_retries(http_server, fab, tmp_path):
    specs, _ = _serve_voc(http_server, fab)
    del http_server.files["/" + TE07]
    with pytest.raises(F.HTTPStatusError, match="404"):
        F.fetch("voc2007", tmp_path, http_server.url, specs=specs, **QUIET)
    assert len(http_server.gets("/" + TE07)) == 1
    _assert_nothing_extracted(tmp_path)


def test_gives_up_after_failed_attempts_and_keeps_the_part(http_server, fab, tmp_path):
    http_server.files["/f.bin"] = body = bytes(range(256)) * 8  # 2048 bytes
    http_server.drop["/f.bin"] = 10 ** 6  # every answer stops halfway
    with pytest.raises(F.FetchError, match="giving up"):
        F.download(http_server.url + "/f.bin", tmp_path / "f.bin", hashlib.md5(body).hexdigest(),
                   retries=2, backoff=0.001, progress=False, log=lambda s: None)
    # halving the rest each time, it gets to 1 byte short, then fails 3 times in a row
    assert (tmp_path / "f.bin.part").read_bytes() == body[:-1]
    assert not (tmp_path / "f.bin").exists()


@pytest.mark.timeout(30)  # the loop this guards against never ended
def test_server_ignoring_range_and_dropping_gives_up_after_retries(http_server, fab, tmp_path, monkeypatch,
                                                                   capsys):
    """Each answer restarts at byte 0 and stops halfway: the bytes come again, no progress
    beyond the first attempt; `--retries 2` allows 3 attempts, then a one-line error."""
    from lossbench.cli import main

    specs, _ = _serve_voc(http_server, fab)
    monkeypatch.setitem(F.DATASETS, "voc2007", specs["voc2007"])
    body = http_server.files["/" + TV07]
    http_server.ignore_range.add("/" + TV07)
    http_server.drop["/" + TV07] = 10 ** 6
    rc = main(["fetch", "voc2007", "--root", str(tmp_path), "--mirror", http_server.url, "--retries", "2",
               "--backoff", "0.001", "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 1
    assert err.startswith("lossbench fetch: error: ") and err.count("\n") == 1 and "Traceback" not in err
    assert f"/{TV07}: giving up after 3 failed attempts without progress beyond byte {len(body) // 2}" in err
    gets = http_server.gets("/" + TV07)
    assert [g[2] for g in gets] == [None] + [f"bytes={len(body) // 2}-"] * 2  # asked to resume; ignored
    part = tmp_path / "downloads/VOCtrainval_06-Nov-2007.tar.part"
    assert part.read_bytes() == body[: len(body) // 2]  # kept for a later run
    assert f"{part} holds {len(body) // 2} bytes" in err


def test_retry_after_is_honoured_and_408_429_503_are_retried(http_server, tmp_path):
    http_server.files["/f.bin"] = body = bytes(range(256)) * 4
    waits: list[float] = []
    http_server.answers["/f.bin"] = [(429, {"Retry-After": "3"}), (503, {"Retry-After": formatdate(
        time.time() + 30, usegmt=True)}), (408, {}), (503, {})]
    F.download(http_server.url + "/f.bin", tmp_path / "f.bin", hashlib.md5(body).hexdigest(), retries=4,
               backoff=0.5, progress=False, sleep=waits.append, log=lambda s: None)
    assert (tmp_path / "f.bin").read_bytes() == body
    # the larger of Retry-After and the back-off 0.5 * 2**k; an HTTP date counts from now
    assert waits[0] == 3 and 28 <= waits[1] <= 30 and waits[2:] == [2.0, 4.0]
    # and with the real clock: Retry-After: 1 is waited
    http_server.answers["/f.bin"] = [(429, {"Retry-After": "1"})]
    t0 = time.monotonic()
    F.download(http_server.url + "/f.bin", tmp_path / "g.bin", hashlib.md5(body).hexdigest(), backoff=0.001,
               progress=False, log=lambda s: None)
    assert time.monotonic() - t0 >= 1.0


def test_requests_ask_for_the_identity_encoding(http_server, tmp_path):
    """Compressed answers would make Range offsets and Content-Length those of the encoded bytes."""
    http_server.files["/f.bin"] = body = bytes(range(256)) * 8
    http_server.drop["/f.bin"] = 1  # a first answer and a resumed one
    F.download(http_server.url + "/f.bin", tmp_path / "f.bin", hashlib.md5(body).hexdigest(),
               backoff=0.001, progress=False, log=lambda s: None)
    assert len(http_server.gets()) == 2
    assert [h.get("Accept-Encoding") for h in http_server.headers] == ["identity", "identity"]


def _tar_with(member: tarfile.TarInfo, data: bytes = b"") -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        t.addfile(member, io.BytesIO(data) if data else None)
    return buf.getvalue()


def _symlink(name: str, target: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = tarfile.SYMTYPE, target
    return info


def _file(name: str, size: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = size
    return info


@pytest.mark.parametrize("member,data,why", [
    (_symlink("VOCdevkit/VOC2007/passwd", "/etc/passwd"), b"", "AbsoluteLinkError"),
    (_file("../escaped.txt", 3), b"bad", "OutsideDestinationError"),
])
def test_tar_filter_refusal_is_a_one_line_cli_error(http_server, fab, tmp_path, monkeypatch, capsys,
                                                    member, data, why):
    from lossbench.cli import main

    specs, _ = _serve_voc(http_server, fab)
    body = _tar_with(member, data)
    http_server.files["/" + TV07] = body
    tv = specs["voc2007"].files[0]
    monkeypatch.setitem(F.DATASETS, "voc2007", F.DatasetSpec("voc2007", (
        F.RemoteFile(tv.path, fab.md5(body), len(body), tv.base), specs["voc2007"].files[1]),
        target="VOCdevkit/VOC2007"))
    root = tmp_path / "data"
    rc = main(["fetch", "voc2007", "--root", str(root), "--mirror", http_server.url, "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 1 and err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith(f"lossbench fetch: error: VOCtrainval_06-Nov-2007.tar: cannot extract member "
                          f"{member.name!r}") and why in err
    _assert_nothing_extracted(root)
    assert not (tmp_path / "escaped.txt").exists()


def test_os_errors_are_one_line_errors_naming_the_file(http_server, fab, tmp_path, monkeypatch, capsys):
    from lossbench.cli import main

    specs, _ = _serve_voc(http_server, fab)
    monkeypatch.setitem(F.DATASETS, "voc2007", specs["voc2007"])
    (tmp_path / "afile").write_text("")
    root = tmp_path / "afile" / "data"  # a folder under a file
    rc = main(["fetch", "voc2007", "--root", str(root), "--mirror", http_server.url, "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 1 and err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("lossbench fetch: error: [Errno 20] Not a directory") and str(root) in err
    # an OS error while extracting names the archive and the member
    bad = tmp_path / "bad.tar"
    bad.write_bytes(fab.tar_bytes({"d/a": b"file", "d/a/b": b"under a file"}))
    with pytest.raises(F.FetchError, match=r"^bad.tar: cannot extract member 'd/a/b' into .*: "
                                           r"(FileExistsError|NotADirectoryError)"):
        F.extract(bad, tmp_path / "x", progress=False)


def test_voc0712_alias_and_coco(http_server, fab, tmp_path):
    specs, members = _serve_voc(http_server, fab, years=("2007", "2012"))
    coco_files = []
    for (_, mem), rel in zip(fab.coco_members().items(),
                                ["zips/train2017.zip", "zips/val2017.zip", "annotations/annotations_trainval2017.zip"]):
        body = fab.zip_bytes(mem)
        http_server.files["/" + rel] = body
        coco_files.append(F.RemoteFile(rel, fab.md5(body), len(body), "http://official.invalid/"))
        members.update({f"coco/{k}": v for k, v in mem.items()})
    specs["coco2017"] = F.DatasetSpec("coco2017", tuple(coco_files), target="coco", extract_to="coco")
    got = F.fetch("voc0712", tmp_path, http_server.url, specs=specs, **QUIET)
    assert [g["name"] for g in got] == ["voc2007", "voc2012"]
    F.fetch("coco2017", tmp_path, http_server.url, specs=specs, keep_archives=True, **QUIET)
    _assert_extracted(tmp_path, members)
    assert sorted(p.name for p in (tmp_path / "coco").iterdir()) == ["annotations", "train2017", "val2017"]
    assert sorted(p.name for p in (tmp_path / "downloads").iterdir()) == [
        "annotations_trainval2017.zip", "train2017.zip", "val2017.zip"]
    for name in ("voc2007", "voc2012", "coco2017"):
        assert F.is_fetched(tmp_path, specs[name])


def test_official_table_matches_the_issue():
    # the md5s and relative paths the issue lists, copied by hand
    table = {(s.name, f.path): f.md5 for s in F.DATASETS.values() for f in s.files}
    assert table == {
        ("voc2007", "voc2007/VOCtrainval_06-Nov-2007.tar"): "c52e279531787c972589f7e41ab4ae64",
        ("voc2007", "voc2007/VOCtest_06-Nov-2007.tar"): "b6e924de25625d8de591ea690078ad9f",
        ("voc2012", "voc2012/VOCtrainval_11-May-2012.tar"): "6cd6e144f989b92b3379bac3b3de84fd",
        ("coco2017", "zips/train2017.zip"): "cced6f7f71b7629ddf16f17bbcfab6b2",
        ("coco2017", "zips/val2017.zip"): "442b8da7639aecaf257c1dceb8ba8c80",
        ("coco2017", "annotations/annotations_trainval2017.zip"): "f4bbac642086de4f52a3fdda2de5fa2c",
    }
    from lossbench.stages import fetch as stage

    for (_, path), digest in table.items():  # the --help text lists the same files
        assert f"{path}  " in stage.__doc__ and digest in stage.__doc__
    f = F.DATASETS["voc2012"].files[0]
    assert f.url() == "https://thor.robots.ox.ac.uk/pascal/VOC/voc2012/VOCtrainval_11-May-2012.tar"
    assert f.url("http://m.example/data/") == "http://m.example/data/voc2012/VOCtrainval_11-May-2012.tar"
    assert [s.name for s in F.expand("voc0712")] == ["voc2007", "voc2012"]
    with pytest.raises(KeyError, match="unknown dataset 'voc2010'"):
        F.expand("voc2010")


def test_complete_or_stale_part_files(http_server, tmp_path):
    body = bytes(range(200)) * 10  # 2000 bytes
    http_server.files["/f.bin"] = body
    digest = hashlib.md5(body).hexdigest()
    # a .part that already holds the whole file: the server answers 416, nothing is re-sent
    (tmp_path / "a.bin.part").write_bytes(body)
    F.download(http_server.url + "/f.bin", tmp_path / "a.bin", digest, progress=False, log=lambda s: None)
    assert (tmp_path / "a.bin").read_bytes() == body
    assert http_server.gets() == [("GET", "/f.bin", "bytes=2000-")]
    # a .part longer than the file (left by another version): dropped, downloaded afresh
    http_server.log.clear()
    (tmp_path / "b.bin.part").write_bytes(body + b"extra")
    F.download(http_server.url + "/f.bin", tmp_path / "b.bin", digest, progress=False, backoff=0.001,
               log=lambda s: None)
    assert (tmp_path / "b.bin").read_bytes() == body
    assert http_server.gets() == [("GET", "/f.bin", "bytes=2005-"), ("GET", "/f.bin", None)]
