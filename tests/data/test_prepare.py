"""lossbench.data.prepare on fabricated VOC 2007/2012 and COCO 2017 in their real layouts
and on a small generated set.

Expected boxes are worked by hand from the XML / JSON written in conftest.py:
VOC ``(xmin, ymin, xmax, ymax)`` (1-based, inclusive) -> COCO
``[xmin - 1, ymin - 1, xmax - xmin + 1, ymax - ymin + 1]``. Expected splits: VOC2007
train = {000005}, val = {000007}, test = {000001, 000002}; VOC2012 trainval =
{2008_000008, 2008_000015}; COCO train2017 = ids 9, 25, 30, 34, 36, 42, val2017 = id 139.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import pytest
from pycocotools.coco import COCO

from lossbench.data import fetch as F
from lossbench.data.classes import CLASSES, SYNTH_CLASSES, class_names
from lossbench.data.prepare import PrepareError, prepare
from lossbench.utils import atomic_write_json

QUIET = dict(log=lambda s: None)


def _voc_root(tmp_path: Path, fab, years=("2007", "2012")) -> Path:
    root = tmp_path / "data"
    for year, archive in fab.VOC_ARCHIVES:
        if year in years:
            fab.write_members(root, fab.voc_members(year, archive))
    return root


def _coco_root(tmp_path: Path, fab) -> Path:
    root = tmp_path / "data"
    for members in fab.coco_members().values():
        fab.write_members(root / "coco", members)
    return root


def _synth_root(tmp_path: Path) -> Path:
    from lossbench.data.synth import SynthParams, generate

    root = tmp_path / "data"
    generate(root, seed=1, n_train=6, n_val=2, n_test=3, log=lambda *a, **k: None,
             params=SynthParams(image_size=64, objects=(1, 2), object_size=(8, 24), distractors=(0, 1)))
    return root


def _load(path: Path) -> dict:
    """Strict JSON: ``NaN`` / ``Infinity`` are an error, as in every other JSON reader."""
    def refuse(token):
        raise ValueError(f"{path}: {token} is not JSON")

    return json.loads(path.read_text(), parse_constant=refuse)


def test_class_order_is_the_one_label_ids_were_built_with():
    """mmdet's lists, pinned to the hand-written tuples the prepared data was built with
    (md5 of the comma-joined names), so a label id can never move."""
    voc, coco = class_names("voc2007"), class_names("coco2017")
    assert hashlib.md5(",".join(voc).encode()).hexdigest() == "4637531af44245361f7d46210ea02920"
    assert hashlib.md5(",".join(coco).encode()).hexdigest() == "14ae710e47d335d8ba6cb2ba82a81f09"
    assert (len(voc), voc[8], voc[-1]) == (20, "chair", "tvmonitor")
    assert (len(coco), coco[11], coco[-1]) == (80, "stop sign", "toothbrush")
    assert CLASSES == {"synth": SYNTH_CLASSES, "voc2007": voc, "voc0712": voc, "coco2017": coco}
    with pytest.raises(KeyError, match="unknown dataset 'voc2010'"):
        class_names("voc2010")


def _boxes(data: dict) -> dict[str, list[tuple]]:
    """file_name -> sorted (category name, bbox, iscrowd)."""
    names = {c["id"]: c["name"] for c in data["categories"]}
    files = {im["id"]: im["file_name"] for im in data["images"]}
    out: dict[str, list[tuple]] = {f: [] for f in files.values()}
    for a in data["annotations"]:
        out[files[a["image_id"]]].append((names[a["category_id"]], a["bbox"], a["iscrowd"]))
    return {k: sorted(v) for k, v in out.items()}


def test_data_commands_do_not_import_mmdet_until_needed():
    """mmdet.datasets (the class lists) is slow to import: `lossbench prepare --help` and the
    data modules must not pay for it."""
    import subprocess
    import sys

    code = ("import sys, contextlib, io\n"
            "import lossbench.data.classes, lossbench.data.prepare, lossbench.data.fetch\n"
            "from lossbench.cli import main\n"
            "for cmd in ('prepare', 'fetch'):\n"
            "    with contextlib.suppress(SystemExit), contextlib.redirect_stdout(io.StringIO()):\n"
            "        main([cmd, '--help'])\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('mmdet', 'torch')))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_voc0712_splits_boxes_and_difficult(tmp_path, fab):
    root = _voc_root(tmp_path, fab)
    summary = prepare("voc0712", root, tmp_path / "out", **QUIET)
    train, val, test = (_load(tmp_path / "out" / f"{s}.json") for s in ("train", "val", "test"))
    d07 = "VOCdevkit/VOC2007/JPEGImages"
    d12 = "VOCdevkit/VOC2012/JPEGImages"
    # train = VOC2007 train + VOC2012 trainval
    assert _boxes(train) == {
        # chair (10, 20, 50, 40) -> [9, 19, 41, 21]; the difficult chair (2, 3, 8, 9) -> [1, 2, 7, 7], ignored
        f"{d07}/000005.jpg": [("chair", [1, 2, 7, 7], 1), ("chair", [9, 19, 41, 21], 0)],
        # horse (11, 12, 61, 42) -> [10, 11, 51, 31]; person (20, 5, 30, 45) -> [19, 4, 11, 41]
        f"{d12}/2008_000008.jpg": [("horse", [10, 11, 51, 31], 0), ("person", [19, 4, 11, 41], 0)],
        # bird (4, 6, 20, 30) -> [3, 5, 17, 25]
        f"{d12}/2008_000015.jpg": [("bird", [3, 5, 17, 25], 0)],
    }
    # val = VOC2007 val: car (1, 1, 40, 30) fills its 40x30 image exactly -> [0, 0, 40, 30], not clipped
    assert _boxes(val) == {f"{d07}/000007.jpg": [("car", [0, 0, 40, 30], 0)]}
    # test = VOC2007 test; dog (5, 6, 25, 30) -> [4, 5, 21, 25]; person (30, 1, 50, 60) -> [29, 0, 21, 60]
    assert _boxes(test) == {
        f"{d07}/000001.jpg": [("dog", [4, 5, 21, 25], 0), ("person", [29, 0, 21, 60], 0)],
        f"{d07}/000002.jpg": [("train", [2, 2, 10, 10], 1)],
    }
    assert [c["name"] for c in train["categories"]] == list(class_names("voc0712"))
    assert [c["id"] for c in train["categories"]] == list(range(1, 21))
    chair = next(a for a in train["annotations"] if a["bbox"] == [9, 19, 41, 21])
    assert chair["category_id"] == 9 and chair["area"] == 41 * 21 and chair["difficult"] == 0
    hard = next(a for a in train["annotations"] if a["iscrowd"])
    assert hard["difficult"] == 1
    assert [im["id"] for im in train["images"]] == [1, 2, 3]
    assert {im["file_name"]: (im["width"], im["height"]) for im in test["images"]} == {
        f"{d07}/000001.jpg": (50, 60), f"{d07}/000002.jpg": (30, 30)}
    for im in train["images"]:  # file_name is relative to --root
        assert (root / im["file_name"]).is_file()
    # independent reader: pycocotools sees the same, with crowd boxes flagged
    coco = COCO(str(tmp_path / "out" / "train.json"))
    assert len(coco.getAnnIds(iscrowd=False)) == 4 and len(coco.getAnnIds()) == 5
    assert coco.loadCats(13)[0]["name"] == "horse"
    s = summary["splits"]
    assert (s["train"]["images"], s["train"]["annotations"], s["train"]["ignored"]) == (3, 5, 1)
    assert s["train"]["per_class"]["chair"] == 2 and s["train"]["per_class"]["person"] == 1
    assert s["train"]["sources"] == ["VOC2007 train", "VOC2012 trainval"]
    assert (s["val"]["sources"], s["test"]["sources"]) == (["VOC2007 val"], ["VOC2007 test"])
    assert summary["splits_disjoint"] is True and summary["val_holdout"] is None
    assert summary["disjoint_check"]["images"] == {"train": 3, "val": 1, "test": 2}
    assert summary["clipped_boxes"] == 0
    assert _load(tmp_path / "out" / "summary.json") == summary


def test_voc2007_uses_only_2007(tmp_path, fab):
    root = _voc_root(tmp_path, fab, years=("2007",))
    prepare("voc2007", root, tmp_path / "out", **QUIET)
    assert [len(_load(tmp_path / "out" / f"{s}.json")["images"]) for s in ("train", "val", "test")] == [1, 1, 2]
    # voc0712 without 2012 fetched: a clear error naming the missing listing
    with pytest.raises(PrepareError, match=r"VOC2012/ImageSets/Main/trainval.txt: missing .*lossbench fetch voc2012"):
        prepare("voc0712", root, tmp_path / "out2", **QUIET)
    assert not (tmp_path / "out2").exists()  # nothing half-written


def _edit_xml(root: Path, year: str, img_id: str, old: str, new: str) -> Path:
    p = root / f"VOCdevkit/VOC{year}/Annotations/{img_id}.xml"
    text = p.read_text()
    assert old in text
    p.write_text(text.replace(old, new))
    return p


@pytest.mark.parametrize("old,new,message", [
    ("</annotation>", "", "not valid XML"),
    ("<name>car</name>", "<name>kar</name>", "object 0: unknown class 'kar'"),
    ("<xmin>1</xmin>", "<xmin>41</xmin>", "empty box xmin,ymin,xmax,ymax = (41, 1, 40, 30)"),
    ("<xmin>1</xmin><ymin>1</ymin><xmax>40</xmax>", "<xmin>45</xmin><ymin>1</ymin><xmax>50</xmax>",
     "box (45, 1, 50, 30) lies outside the 40x30 image"),
    ("<width>40</width>", "<width>forty</width>", "numeric <width>"),
    ("<ymax>30</ymax>", "<ymax>3O</ymax>", "numeric xmin, ymin, xmax, ymax"),
    # non-finite: an error naming the object (nan would be written as NaN, inf clipped to the image)
    ("<xmin>1</xmin>", "<xmin>nan</xmin>",
     "object 0 (car): <bndbox> needs finite numeric xmin, ymin, xmax, ymax (<bndbox/xmin> is 'nan')"),
    ("<xmax>40</xmax>", "<xmax>inf</xmax>",
     "object 0 (car): <bndbox> needs finite numeric xmin, ymin, xmax, ymax (<bndbox/xmax> is 'inf')"),
    ("<xmin>1</xmin>", "<xmin>-inf</xmin>",
     "object 0 (car): <bndbox> needs finite numeric xmin, ymin, xmax, ymax (<bndbox/xmin> is '-inf')"),
    ("<height>30</height>", "<height>inf</height>",
     "<size> needs finite numeric <width> and <height>, whole numbers of pixels (<size/height> is 'inf')"),
    # an image has a whole number of pixels: 40.9 is not truncated to 40
    ("<width>40</width>", "<width>40.9</width>",
     "<size> needs finite numeric <width> and <height>, whole numbers of pixels (40.9 is not a whole number > 0)"),
    ("<width>40</width>", "<width>0</width>", "(0.0 is not a whole number > 0)"),
])
def test_malformed_voc_annotation_names_file_and_problem(tmp_path, fab, old, new, message):
    root = _voc_root(tmp_path, fab)
    p = _edit_xml(root, "2007", "000007", old, new)  # the car of a 40x30 image, box (1, 1, 40, 30)
    with pytest.raises(PrepareError) as e:
        prepare("voc0712", root, tmp_path / "out", **QUIET)
    assert str(p) in str(e.value) and message in str(e.value)
    assert not (tmp_path / "out").exists()


def test_fractional_voc_corners_are_kept_not_truncated(tmp_path, fab):
    root = _voc_root(tmp_path, fab)
    # the chair (10, 20, 50, 40) of 000005 -> (10.5, 20, 50.25, 40), and a whole size written "64.0"
    _edit_xml(root, "2007", "000005", "<xmin>10</xmin>", "<xmin>10.5</xmin>")
    _edit_xml(root, "2007", "000005", "<xmax>50</xmax>", "<xmax>50.25</xmax>")
    _edit_xml(root, "2007", "000005", "<width>64</width>", "<width>64.0</width>")
    prepare("voc0712", root, tmp_path / "out", **QUIET)
    train = _load(tmp_path / "out" / "train.json")
    chair = next(a for a in train["annotations"] if a["bbox"][1] == 19)
    # [xmin - 1, ymin - 1, xmax - xmin + 1, ymax - ymin + 1] = [9.5, 19, 40.75, 21]
    assert chair["bbox"] == [9.5, 19, 40.75, 21] and chair["area"] == 40.75 * 21
    assert train["images"][0]["width"] == 64


def test_box_partly_outside_is_clipped_and_counted_or_strict_error(tmp_path, fab):
    root = _voc_root(tmp_path, fab)
    # the chair of 000005 (64x48 image) now reaches x = 70: clipped to xmax = 64 -> w = 64 - 10 + 1 = 55
    p = _edit_xml(root, "2007", "000005", "<xmax>50</xmax>", "<xmax>70</xmax>")
    summary = prepare("voc0712", root, tmp_path / "out", **QUIET)
    assert summary["clipped_boxes"] == 1
    assert "000005.xml: object 0 (chair)" in summary["clipped_examples"][0]
    boxes = _boxes(_load(tmp_path / "out" / "train.json"))
    assert ("chair", [9, 19, 55, 21], 0) in boxes["VOCdevkit/VOC2007/JPEGImages/000005.jpg"]
    with pytest.raises(PrepareError, match="extends outside the 64x48 image") as e:
        prepare("voc0712", root, tmp_path / "strict", strict=True, **QUIET)
    assert str(p) in str(e.value)


def test_missing_image_and_wrong_image_size(tmp_path, fab):
    root = _voc_root(tmp_path, fab)
    jpg = root / "VOCdevkit/VOC2012/JPEGImages/2008_000008.jpg"
    jpg.write_bytes(fab.jpeg_bytes(71, 50))
    with pytest.raises(PrepareError, match=r"2008_000008.jpg: image is 71x50 but .*2008_000008.xml says 70x50"):
        prepare("voc0712", root, tmp_path / "out", **QUIET)
    prepare("voc0712", root, tmp_path / "out", check_images=False, **QUIET)  # the check can be skipped
    jpg.unlink()
    with pytest.raises(PrepareError, match="2008_000008.jpg: image missing"):
        prepare("voc0712", root, tmp_path / "out2", check_images=False, **QUIET)


def test_coco_remap_clip_drop_and_ids(tmp_path, fab):
    root = _coco_root(tmp_path, fab)
    summary = prepare("coco2017", root, tmp_path / "out", val_holdout=2, **QUIET)
    train = _load(tmp_path / "out" / "train.json")
    val = _load(tmp_path / "out" / "val.json")
    test = _load(tmp_path / "out" / "test.json")
    assert [c["name"] for c in train["categories"]] == list(class_names("coco2017"))
    # 34 and 42 held out as val (the two smallest md5("coco-val-holdout:" + file_name))
    assert [im["file_name"] for im in train["images"]] == [f"coco/train2017/{i:012d}.jpg" for i in (9, 25, 30, 36)]
    assert [im["id"] for im in train["images"]] == [9, 25, 30, 36]  # COCO ids kept
    assert [im["id"] for im in val["images"]] == [34, 42]
    anns = {a["id"]: a for a in train["annotations"]}
    assert sorted(anns) == [101, 102, 103, 105]  # 104 (0.5 px wide) dropped
    assert anns[101]["category_id"] == 1 and anns[101]["bbox"] == [1.5, 2, 20, 30.25]
    # toothbrush: official id 90 -> 80; [50, 10, 20, 5] in a 64-wide image -> w = 14; area kept
    assert anns[102]["category_id"] == 80 and anns[102]["bbox"] == [50, 10, 14, 5] and anns[102]["area"] == 80
    # stop sign: official id 13 -> 12, still a crowd box
    assert anns[103]["category_id"] == 12 and anns[103]["iscrowd"] == 1
    assert all("segmentation" not in a for a in train["annotations"])
    # dog: official id 18 -> 17; zebra 24 -> 23 and car 3 -> 3 in val, ids kept
    assert anns[105]["category_id"] == 17 and anns[105]["bbox"] == [2, 3, 20, 15]
    assert [(a["id"], a["category_id"], a["bbox"]) for a in val["annotations"]] == [
        (106, 23, [10, 4, 30, 30]), (107, 3, [0, 6, 25, 12])]
    # test = val2017; chair: official id 62 -> 57
    assert [im["file_name"] for im in test["images"]] == ["coco/val2017/000000000139.jpg"]
    assert [(a["category_id"], a["bbox"]) for a in test["annotations"]] == [(57, [10, 10, 20, 20])]
    assert summary["clipped_boxes"] == 1 and summary["dropped_tiny_boxes"] == 1
    assert "annotation 104" in summary["dropped_examples"][0]
    assert COCO(str(tmp_path / "out" / "train.json")).loadCats(80)[0]["name"] == "toothbrush"


@pytest.mark.parametrize("edit,message", [
    (lambda d: d["categories"].__setitem__(11, {"id": 12, "name": "street sign"}),
     "unknown category id=12 name='street sign'"),
    (lambda d: d["annotations"][0].__setitem__("image_id", 77), "annotation 101: unknown image_id 77"),
    (lambda d: d["annotations"][0].__setitem__("category_id", 12), "annotation 101: unknown category_id 12"),
    (lambda d: d["categories"].__setitem__(1, {"id": 2, "name": "person"}), "repeated category id=2 name='person'"),
    (lambda d: d["annotations"][0].__setitem__("bbox", [1, 2, 3]), "annotation 101: bbox must be 4 finite numbers"),
    # non-finite (json writes NaN / Infinity, which json.load reads back) and fractional sizes
    (lambda d: d["annotations"][0]["bbox"].__setitem__(0, math.nan),
     "annotation 101: bbox must be 4 finite numbers [x, y, w, h], got [nan, 2.0, 20.0, 30.25]"),
    (lambda d: d["annotations"][0]["bbox"].__setitem__(2, math.inf), "annotation 101: bbox must be 4 finite"),
    (lambda d: d["annotations"][0]["bbox"].__setitem__(0, -math.inf), "annotation 101: bbox must be 4 finite"),
    (lambda d: d["annotations"][0].__setitem__("area", math.nan), "annotation 101: area must be a finite number"),
    (lambda d: d["images"][0].__setitem__("width", math.inf),
     "image 9: needs id, file_name and positive whole width, height (ValueError('inf is not a whole number > 0'))"),
    (lambda d: d["images"][0].__setitem__("height", 48.5), "image 9: needs id, file_name and positive whole"),
    (lambda d: d["annotations"][0].__setitem__("bbox", [70, 2, 3, 4]), "annotation 101: bbox [70, 2, 3, 4] lies outside"),
    (lambda d: d.pop("images"), "expected a list under 'images'"),
])
def test_malformed_coco_names_file_and_problem(tmp_path, fab, edit, message):
    root = _coco_root(tmp_path, fab)
    p = root / "coco/annotations/instances_train2017.json"
    data = _load(p)
    edit(data)
    p.write_text(json.dumps(data))
    with pytest.raises(PrepareError) as e:
        prepare("coco2017", root, tmp_path / "out", val_holdout=2, **QUIET)
    assert str(p) in str(e.value) and message in str(e.value)


def test_written_json_is_strict(tmp_path):
    with pytest.raises(ValueError, match="not JSON compliant"):
        atomic_write_json(tmp_path / "x.json", {"bbox": [math.nan, 0, 1, 1]})
    assert not (tmp_path / "x.json").exists()


def test_coco_bad_json(tmp_path, fab):
    root = _coco_root(tmp_path, fab)
    p = root / "coco/annotations/instances_val2017.json"
    p.write_text('{"images": [')
    with pytest.raises(PrepareError, match="instances_val2017.json: not valid JSON"):
        prepare("coco2017", root, tmp_path / "out", val_holdout=2, **QUIET)


def test_subset_is_deterministic_nested_and_per_split(tmp_path, fab):
    root = _voc_root(tmp_path, fab)
    files = {}
    for n in (1, 2, 3):
        summary = prepare("voc0712", root, tmp_path / f"s{n}", subset=n, seed=3, **QUIET)
        files[n] = [im["file_name"] for im in _load(tmp_path / f"s{n}" / "train.json")["images"]]
        # per split: val (1 image) and test (2 images) keep min(n, their size)
        assert [summary["splits"][s]["images"] for s in ("val", "test")] == [1, min(n, 2)]
    assert [len(files[n]) for n in (1, 2, 3)] == [1, 2, 3]
    assert set(files[1]) <= set(files[2]) <= set(files[3])
    prepare("voc0712", root, tmp_path / "again", subset=2, seed=3, **QUIET)
    assert (tmp_path / "again" / "train.json").read_bytes() == (tmp_path / "s2" / "train.json").read_bytes()
    # another seed picks by another order (3 images, 2 kept: 3 possible pairs; seeds 0..9 cannot all agree)
    picks = set()
    for seed in range(10):
        prepare("voc0712", root, tmp_path / f"seed{seed}", subset=2, seed=seed, **QUIET)
        picks.add(tuple(im["file_name"] for im in _load(tmp_path / f"seed{seed}" / "train.json")["images"]))
    assert len(picks) > 1


def test_refuses_to_replace_a_foreign_folder(tmp_path, fab):
    root = _voc_root(tmp_path, fab)
    out = tmp_path / "out"
    out.mkdir()
    (out / "precious.txt").write_text("keep me")
    with pytest.raises(FileExistsError):
        prepare("voc0712", root, out, **QUIET)
    assert (out / "precious.txt").read_text() == "keep me"
    # a previous prepare output is replaced as a whole
    prepare("voc0712", root, tmp_path / "p", **QUIET)
    (tmp_path / "p" / "stale.json").write_text("{}")
    prepare("voc0712", root, tmp_path / "p", subset=1, **QUIET)
    assert sorted(x.name for x in (tmp_path / "p").iterdir()) == ["summary.json", "test.json", "train.json", "val.json"]


def test_fetch_then_prepare_end_to_end(http_server, fab, tmp_path):
    """Archives served over HTTP in the real layouts -> fetch -> prepare."""
    root = tmp_path / "data"
    specs = {}
    rels = {("2007", "trainval"): "voc2007/VOCtrainval_06-Nov-2007.tar",
            ("2007", "test"): "voc2007/VOCtest_06-Nov-2007.tar",
            ("2012", "trainval"): "voc2012/VOCtrainval_11-May-2012.tar"}
    assert set(rels) == set(fab.VOC_ARCHIVES)
    for year in ("2007", "2012"):
        files = []
        for (y, imageset), rel in rels.items():
            if y == year:
                body = fab.tar_bytes(fab.voc_members(year, imageset))
                http_server.files["/" + rel] = body
                files.append(F.RemoteFile(rel, fab.md5(body), len(body), "http://official.invalid/"))
        specs[f"voc{year}"] = F.DatasetSpec(f"voc{year}", tuple(files), target=f"VOCdevkit/VOC{year}")
    coco_files = []
    for (_, members), rel in zip(fab.coco_members().items(), ["zips/train2017.zip", "zips/val2017.zip",
                                                                  "annotations/annotations_trainval2017.zip"]):
        body = fab.zip_bytes(members)
        http_server.files["/" + rel] = body
        coco_files.append(F.RemoteFile(rel, fab.md5(body), len(body), "http://official.invalid/"))
    specs["coco2017"] = F.DatasetSpec("coco2017", tuple(coco_files), target="coco", extract_to="coco")
    for name in ("voc0712", "coco2017"):
        F.fetch(name, root, http_server.url, specs=specs, progress=False, log=lambda s: None)
    voc = prepare("voc0712", root, tmp_path / "voc", **QUIET)
    coco = prepare("coco2017", root, tmp_path / "coco", val_holdout=2, **QUIET)
    assert [voc["splits"][s]["images"] for s in ("train", "val", "test")] == [3, 1, 2]
    # train 9, 25, 30, 36: annotations 101, 102, 103, 105; val 34, 42: 106, 107; test 139: 201
    assert [coco["splits"][s]["annotations"] for s in ("train", "val", "test")] == [4, 2, 1]


def test_mmdet_cocodataset_reads_the_output(tmp_path, fab):
    """What training sees: MMDetection's CocoDataset on the prepared JSON, with
    data_root = --root, an empty image prefix and the classes in our order."""
    pytest.importorskip("mmdet.datasets", reason="needs mmdet (and mmcv) installed")
    from mmdet.datasets import CocoDataset

    root = _voc_root(tmp_path, fab)
    prepare("voc0712", root, tmp_path / "out", **QUIET)
    ds = CocoDataset(data_root=str(root), ann_file=str(tmp_path / "out" / "train.json"), data_prefix=dict(img=""),
                     metainfo=dict(classes=class_names("voc0712")), pipeline=[], filter_cfg=None)
    first = ds[0]  # VOC2007 000005: the difficult chair and the chair
    assert first["img_path"] == str(root / "VOCdevkit/VOC2007/JPEGImages/000005.jpg")
    # xyxy = [x, y, x + w, y + h]; chair is label 8 (0-based) of the VOC order; difficult -> ignored
    assert sorted((i["bbox"], i["bbox_label"], i["ignore_flag"]) for i in first["instances"]) == [
        ([1, 2, 8, 9], 8, 1), ([9, 19, 50, 40], 8, 0)]
    assert [i["bbox_label"] for i in ds[1]["instances"]] == [12, 14]  # VOC2012 2008_000008: horse, person


def test_profile_driven_fetch_and_prepare_stages(tmp_path, capsys):
    """The DVC stages: `fetch --profile` generates a synth set, `prepare --profile` reads
    profiles.NAME.prepare; unknown keys are errors naming the params file and key."""
    from lossbench.cli import main

    params = tmp_path / "params.yaml"
    params.write_text(
        "profiles:\n"
        "  tiny:\n    dataset: synth\n"
        "    data: {seed: 2, n_train: 6, n_val: 2, n_test: 3, image_size: 64, objects: [1, 2],\n"
        "           object_size: [8, 24], workers: 1, anchor_config: none}\n"
        "    prepare: {subset: 4, seed: 1}\n"
        "  typo:\n    dataset: synth\n    data: {n_trian: 5}\n"
        "  vocbad:\n    dataset: voc0712\n    data: {mirorr: x}\n")
    raw, out = tmp_path / "raw", tmp_path / "prepared"
    assert main(["fetch", "--profile", "tiny", "--params", str(params), "--root", str(raw)]) == 0
    stats = json.loads((raw / "stats.json").read_text())
    assert stats["seed"] == 2 and stats["params"]["image_size"] == 64 and stats["params"]["objects"] == [1, 2]
    assert [stats["splits"][s]["images"] for s in ("train", "val", "test")] == [6, 2, 3]
    assert main(["prepare", "--profile", "tiny", "--params", str(params), "--root", str(raw), "--out", str(out)]) == 0
    summary = _load(out / "summary.json")
    assert summary["dataset"] == "synth" and (summary["subset"], summary["seed"]) == (4, 1)
    assert [summary["splits"][s]["images"] for s in ("train", "val", "test")] == [4, 2, 3]  # subset 4 per split
    # an explicit flag wins over the profile
    assert main(["prepare", "--profile", "tiny", "--params", str(params), "--root", str(raw), "--out",
                 str(tmp_path / "p2"), "--subset", "1"]) == 0
    assert _load(tmp_path / "p2" / "summary.json")["splits"]["train"]["images"] == 1
    capsys.readouterr()
    assert main(["fetch", "--profile", "typo", "--params", str(params), "--root", str(tmp_path / "r2")]) == 1
    assert f"{params}: profiles.typo.data: unknown keys ['n_trian']" in capsys.readouterr().err
    assert main(["fetch", "--profile", "vocbad", "--params", str(params), "--root", str(tmp_path / "r3")]) == 1
    assert "profiles.vocbad.data: unknown keys ['mirorr']" in capsys.readouterr().err
    assert not (tmp_path / "r3" / "downloads").exists()  # refused before any network work


# ----------------------------------------------------------------------------
# Three disjoint splits: val for choosing settings, test for reporting
# ----------------------------------------------------------------------------

def _holdout_md5(file_name: str) -> str:
    return hashlib.md5(f"coco-val-holdout:{file_name}".encode()).hexdigest()


def _split_files(out: Path) -> dict[str, list[str]]:
    return {s: [im["file_name"] for im in _load(out / f"{s}.json")["images"]] for s in ("train", "val", "test")}


def _assert_pairwise_disjoint(root: Path, files: dict[str, list[str]]) -> None:
    """No file_name and no file content (md5 of the bytes) in two splits."""
    content = {s: {hashlib.md5((root / f).read_bytes()).hexdigest() for f in fs} for s, fs in files.items()}
    for a, b in (("train", "val"), ("train", "test"), ("val", "test")):
        assert not set(files[a]) & set(files[b]), (a, b)
        assert not content[a] & content[b], (a, b)
    assert all(files.values())


@pytest.mark.parametrize("dataset", ["synth", "voc2007", "voc0712", "coco2017"])
def test_splits_are_pairwise_disjoint_by_name_and_bytes(tmp_path, fab, dataset):
    make = {"synth": lambda: _synth_root(tmp_path), "coco2017": lambda: _coco_root(tmp_path, fab)}
    root = make.get(dataset, lambda: _voc_root(tmp_path, fab))()
    summary = prepare(dataset, root, tmp_path / "out", **QUIET,
                      **({"val_holdout": 2} if dataset == "coco2017" else {}))
    files = _split_files(tmp_path / "out")
    _assert_pairwise_disjoint(root, files)
    assert summary["splits_disjoint"] is True
    assert {s: summary["splits"][s]["images"] for s in files} == {s: len(fs) for s, fs in files.items()}
    if dataset == "synth":  # the generator's own splits, image for image
        for s in files:
            assert files[s] == [im["file_name"] for im in _load(root / "annotations" / f"{s}.json")["images"]]


def test_voc_val_and_test_are_the_official_voc2007_lists(tmp_path, fab):
    root = _voc_root(tmp_path, fab)
    main07 = root / "VOCdevkit/VOC2007/ImageSets/Main"
    main12 = root / "VOCdevkit/VOC2012/ImageSets/Main"
    # the fixture's layout: trainval = train + val, sorted
    assert main07.joinpath("trainval.txt").read_text() == "000005\n000007\n"
    assert main12.joinpath("trainval.txt").read_text() == "2008_000008\n2008_000015\n"

    def listed(folder: Path, year: str, imageset: str) -> list[str]:
        ids = folder.joinpath(f"{imageset}.txt").read_text().split()
        return [f"VOCdevkit/VOC{year}/JPEGImages/{i}.jpg" for i in ids]

    for dataset, train in [("voc2007", listed(main07, "2007", "train")),
                           ("voc0712", listed(main07, "2007", "train") + listed(main12, "2012", "trainval"))]:
        prepare(dataset, root, tmp_path / dataset, **QUIET)
        files = _split_files(tmp_path / dataset)
        assert files == {"train": train, "val": listed(main07, "2007", "val"), "test": listed(main07, "2007", "test")}
        assert files["val"] == ["VOCdevkit/VOC2007/JPEGImages/000007.jpg"]
        assert not (tmp_path / dataset / "val_holdout.txt").exists()


def test_coco_val_is_the_documented_md5_holdout_of_train2017(tmp_path, fab):
    root = _coco_root(tmp_path, fab)
    train2017 = [im["file_name"] for im in _load(root / "coco/annotations/instances_train2017.json")["images"]]
    # hand-computed: md5("coco-val-holdout:" + file_name), the two smallest hex digests
    held = sorted(sorted(train2017, key=_holdout_md5)[:2])
    assert held == ["000000000034.jpg", "000000000042.jpg"]  # digests 2e27..., 4835...; then 36 (5110...)
    summary = prepare("coco2017", root, tmp_path / "out", val_holdout=2, **QUIET)
    files = _split_files(tmp_path / "out")
    assert files["val"] == [f"coco/train2017/{f}" for f in held]
    assert sorted(files["train"] + files["val"]) == [f"coco/train2017/{f}" for f in sorted(train2017)]
    assert files["test"] == ["coco/val2017/000000000139.jpg"]
    assert (tmp_path / "out" / "val_holdout.txt").read_text() == "000000000034.jpg\n000000000042.jpg\n"
    assert summary["val_holdout"]["images"] == 2 and summary["val_holdout"]["listed_in"] == "val_holdout.txt"
    assert 'md5(f"coco-val-holdout:{file_name}")' in summary["val_holdout"]["rule"]
    assert summary["splits"]["val"]["sources"] == ["COCO train2017 val_holdout (2)"]
    assert summary["disjoint_check"]["images"] == {"train": 4, "val": 2, "test": 1}
    assert _load(tmp_path / "out" / "summary.json") == summary
    # three held out: the next smallest digest (36) joins; the JSON's image order does not matter
    p = root / "coco/annotations/instances_train2017.json"
    data = _load(p)
    data["images"].reverse()
    p.write_text(json.dumps(data))
    prepare("coco2017", root, tmp_path / "three", val_holdout=3, **QUIET)
    assert (tmp_path / "three" / "val_holdout.txt").read_text() == "000000000034.jpg\n000000000036.jpg\n000000000042.jpg\n"
    assert sorted(_split_files(tmp_path / "three")["train"]) == [f"coco/train2017/{i:012d}.jpg" for i in (9, 25, 30)]


def test_coco_subset_applies_after_the_holdout(tmp_path, fab):
    root = _coco_root(tmp_path, fab)
    summary = prepare("coco2017", root, tmp_path / "out", val_holdout=3, subset=1, seed=0, **QUIET)
    files = _split_files(tmp_path / "out")
    assert {s: len(fs) for s, fs in files.items()} == {"train": 1, "val": 1, "test": 1}
    # the kept val image is one of the held-out three, the kept train image one of the other three
    held = (tmp_path / "out" / "val_holdout.txt").read_text().split()
    assert len(held) == 3 and files["val"][0].removeprefix("coco/train2017/") in held
    assert files["train"][0].removeprefix("coco/train2017/") not in held
    assert summary["disjoint_check"]["images"] == {"train": 3, "val": 3, "test": 1}


@pytest.mark.parametrize("n,message", [
    (6, "val_holdout = 6 needs at least 7 train2017 images (train keeps the rest), found 6"),
    (0, "val_holdout must be a whole number >= 1, got 0"),
    (True, "val_holdout must be a whole number >= 1, got True"),
])
def test_coco_val_holdout_out_of_range(tmp_path, fab, n, message):
    root = _coco_root(tmp_path, fab)
    with pytest.raises(PrepareError) as e:
        prepare("coco2017", root, tmp_path / "out", val_holdout=n, **QUIET)
    assert message in str(e.value)
    assert not (tmp_path / "out").exists()
    prepare("coco2017", root, tmp_path / "five", val_holdout=5, **QUIET)  # the largest that leaves a train image
    assert len(_split_files(tmp_path / "five")["train"]) == 1


def test_default_val_holdout_is_5000_and_coco_only(tmp_path, fab):
    root = _coco_root(tmp_path, fab)
    with pytest.raises(PrepareError, match="val_holdout = 5000 needs at least 5001 train2017 images .* found 6"):
        prepare("coco2017", root, tmp_path / "out", **QUIET)
    with pytest.raises(PrepareError, match="val_holdout applies to coco2017 only"):
        prepare("voc0712", _voc_root(tmp_path / "v", fab), tmp_path / "out", val_holdout=2, **QUIET)


def test_voc_image_in_val_and_test_is_refused_before_writing(tmp_path, fab):
    root = _voc_root(tmp_path, fab)
    val_txt = root / "VOCdevkit/VOC2007/ImageSets/Main/val.txt"
    val_txt.write_text(val_txt.read_text() + "000001\n")  # also in test.txt
    with pytest.raises(PrepareError) as e:
        prepare("voc2007", root, tmp_path / "out", **QUIET)
    assert ("splits val and test share 1 image(s) by file_name, e.g. VOCdevkit/VOC2007/JPEGImages/000001.jpg"
            in str(e.value))
    assert not (tmp_path / "out").exists()


def test_same_bytes_under_two_names_is_an_overlap(tmp_path, fab):
    """COCO: val2017's image replaced by a copy of a train2017 image that stays in train."""
    root = _coco_root(tmp_path, fab)
    p = root / "coco/annotations/instances_val2017.json"
    data = _load(p)
    data["images"][0].update(width=64, height=48)  # the size of train2017's 000000000009.jpg
    p.write_text(json.dumps(data))
    (root / "coco/val2017/000000000139.jpg").write_bytes((root / "coco/train2017/000000000009.jpg").read_bytes())
    with pytest.raises(PrepareError) as e:
        prepare("coco2017", root, tmp_path / "out", val_holdout=2, **QUIET)
    assert ("splits train and test share 1 image(s) by content (the same bytes under two names), "
            "e.g. coco/train2017/000000000009.jpg = coco/val2017/000000000139.jpg") in str(e.value)
    assert not (tmp_path / "out").exists()


def test_synth_overlap_by_name_and_by_bytes(tmp_path):
    root = _synth_root(tmp_path)
    p = root / "annotations" / "test.json"
    original = p.read_text()
    test = json.loads(original)
    val_file = _load(root / "annotations" / "val.json")["images"][0]["file_name"]
    test_file = test["images"][0]["file_name"]
    test["images"][0]["file_name"] = val_file  # same size: the generator's images are all 64x64
    p.write_text(json.dumps(test))
    with pytest.raises(PrepareError, match=f"splits val and test share 1 image\\(s\\) by file_name, e.g. {val_file}"):
        prepare("synth", root, tmp_path / "out", **QUIET)
    p.write_text(original)
    (root / test_file).write_bytes((root / val_file).read_bytes())
    with pytest.raises(PrepareError, match=f"splits val and test share 1 image\\(s\\) by content .* e.g. "
                                           f"{val_file} = {test_file}"):
        prepare("synth", root, tmp_path / "out", **QUIET)


def test_val_holdout_from_the_profile_or_the_flag(tmp_path, fab, capsys):
    from lossbench.cli import main

    root = _coco_root(tmp_path, fab)
    params = tmp_path / "params.yaml"
    params.write_text("profiles:\n"
                      "  coco:\n    dataset: coco2017\n    data: {}\n    prepare: {subset: null, val_holdout: 2}\n"
                      "  voc:\n    dataset: voc0712\n    data: {}\n    prepare: {val_holdout: 2}\n")
    args = ["prepare", "--params", str(params), "--root", str(root)]
    assert main([*args, "--profile", "coco", "--out", str(tmp_path / "a")]) == 0
    assert (tmp_path / "a" / "val_holdout.txt").read_text().split() == ["000000000034.jpg", "000000000042.jpg"]
    assert main([*args, "--profile", "coco", "--out", str(tmp_path / "b"), "--val-holdout", "3"]) == 0  # flag wins
    assert _load(tmp_path / "b" / "summary.json")["val_holdout"]["images"] == 3
    capsys.readouterr()
    assert main([*args, "--profile", "voc", "--out", str(tmp_path / "c")]) == 2
    assert "val_holdout applies to coco2017 only (voc0712 has its own val split)" in capsys.readouterr().err
    assert main([*args, "--dataset", "coco2017", "--out", str(tmp_path / "d")]) == 2  # default 5000 > 6 images
    assert "val_holdout = 5000 needs at least 5001 train2017 images" in capsys.readouterr().err
