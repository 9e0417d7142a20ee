"""lossbench.data.fetch against a local HTTP server serving fabricated archives.

Covers: success (files extracted byte for byte, marker written, archives
removed), resume after a dropped connection (Range request continues), resume
of a .part left by an interrupted run, checksum mismatch and corrupted body
(clear error, nothing extracted, bad file set aside, next run downloads afresh),
idempotent second run (zero requests), disk-space check, mirror from the
environment, 4xx without retries, COCO and the voc0712 alias.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

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


def test_not_enough_disk_space_fails_before_downloading(http_server, fab, tmp_path):
    specs, _ = _serve_voc(http_server, fab)
    with pytest.raises(F.DiskSpaceError) as e:
        F.fetch("voc2007", tmp_path, http_server.url, specs=specs, free_space=lambda p: 1000, **QUIET)
    assert "needs" in str(e.value) and "1000.0 B is available" in str(e.value)
    assert http_server.gets() == []  # only HEADs for the sizes
    assert [r[0] for r in http_server.log] == ["HEAD", "HEAD"]


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


def test_voc0712_alias_and_coco(http_server, fab, tmp_path):
    specs, members = _serve_voc(http_server, fab, years=("2007", "2012"))
    coco_files = []
    for (name, mem), rel in zip(fab.coco_members().items(),
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
