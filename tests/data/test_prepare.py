"""lossbench.data.prepare on fabricated VOC 2007/2012 and COCO 2017 in their real layouts.

Expected boxes are worked by hand from the XML / JSON written in conftest.py:
VOC ``(xmin, ymin, xmax, ymax)`` (1-based, inclusive) -> COCO
``[xmin - 1, ymin - 1, xmax - xmin + 1, ymax - ymin + 1]``.
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
    for year in years:
        for imageset in fab.VOC_CONTENT[year]:
            fab.write_members(root, fab.voc_members(year, imageset))
    return root


def _coco_root(tmp_path: Path, fab) -> Path:
    root = tmp_path / "data"
    for members in fab.coco_members().values():
        fab.write_members(root / "coco", members)
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
    assert _boxes(train) == {
        # chair (10, 20, 50, 40) -> [9, 19, 41, 21]; the difficult chair (2, 3, 8, 9) -> [1, 2, 7, 7], ignored
        f"{d07}/000005.jpg": [("chair", [1, 2, 7, 7], 1), ("chair", [9, 19, 41, 21], 0)],
        # car (1, 1, 40, 30) fills its 40x30 image exactly -> [0, 0, 40, 30], not clipped
        f"{d07}/000007.jpg": [("car", [0, 0, 40, 30], 0)],
        # horse (11, 12, 61, 42) -> [10, 11, 51, 31]; person (20, 5, 30, 45) -> [19, 4, 11, 41]
        "VOCdevkit/VOC2012/JPEGImages/2008_000008.jpg": [("horse", [10, 11, 51, 31], 0),
                                                        ("person", [19, 4, 11, 41], 0)],
    }
    # val = test = VOC2007 test; dog (5, 6, 25, 30) -> [4, 5, 21, 25]; person (30, 1, 50, 60) -> [29, 0, 21, 60]
    assert _boxes(val) == _boxes(test) == {
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
    assert {im["file_name"]: (im["width"], im["height"]) for im in val["images"]} == {
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
    assert s["train"]["sources"] == ["VOC2007 trainval", "VOC2012 trainval"]
    assert summary["clipped_boxes"] == 0
    assert _load(tmp_path / "out" / "summary.json") == summary


def test_voc2007_uses_only_2007(tmp_path, fab):
    root = _voc_root(tmp_path, fab, years=("2007",))
    prepare("voc2007", root, tmp_path / "out", **QUIET)
    assert len(_load(tmp_path / "out" / "train.json")["images"]) == 2
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
    summary = prepare("coco2017", root, tmp_path / "out", **QUIET)
    train = _load(tmp_path / "out" / "train.json")
    val = _load(tmp_path / "out" / "val.json")
    assert [c["name"] for c in train["categories"]] == list(class_names("coco2017"))
    assert [im["file_name"] for im in train["images"]] == ["coco/train2017/000000000009.jpg",
                                                           "coco/train2017/000000000025.jpg"]
    assert [im["id"] for im in train["images"]] == [9, 25]  # COCO ids kept
    anns = {a["id"]: a for a in train["annotations"]}
    assert sorted(anns) == [101, 102, 103]  # 104 (0.5 px wide) dropped
    assert anns[101]["category_id"] == 1 and anns[101]["bbox"] == [1.5, 2, 20, 30.25]
    # toothbrush: official id 90 -> 80; [50, 10, 20, 5] in a 64-wide image -> w = 14; area kept
    assert anns[102]["category_id"] == 80 and anns[102]["bbox"] == [50, 10, 14, 5] and anns[102]["area"] == 80
    # stop sign: official id 13 -> 12, still a crowd box
    assert anns[103]["category_id"] == 12 and anns[103]["iscrowd"] == 1
    assert all("segmentation" not in a for a in train["annotations"])
    # chair: official id 62 -> 57
    assert [(a["category_id"], a["bbox"]) for a in val["annotations"]] == [(57, [10, 10, 20, 20])]
    assert _load(tmp_path / "out" / "test.json")["images"] == val["images"]
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
        prepare("coco2017", root, tmp_path / "out", **QUIET)
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
        prepare("coco2017", root, tmp_path / "out", **QUIET)


def test_subset_is_deterministic_nested_and_shared_by_val_and_test(tmp_path, fab):
    root = _voc_root(tmp_path, fab)
    files = {}
    for n in (1, 2, 3):
        prepare("voc0712", root, tmp_path / f"s{n}", subset=n, seed=3, **QUIET)
        files[n] = [im["file_name"] for im in _load(tmp_path / f"s{n}" / "train.json")["images"]]
        assert _load(tmp_path / f"s{n}" / "val.json")["images"] == _load(tmp_path / f"s{n}" / "test.json")["images"]
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
    coco = prepare("coco2017", root, tmp_path / "coco", **QUIET)
    assert [voc["splits"][s]["images"] for s in ("train", "val", "test")] == [3, 2, 2]
    assert [coco["splits"][s]["annotations"] for s in ("train", "val", "test")] == [3, 1, 1]


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
    assert [i["bbox_label"] for i in ds[2]["instances"]] == [12, 14]  # horse, person


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
