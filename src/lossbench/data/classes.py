"""Class lists of the study's datasets, in the fixed order training uses.

Prepared COCO-format JSON numbers its categories ``1..C`` in the order of ``class_names(dataset)``, so a config's
``metainfo=dict(classes=...)`` lines up with the labels MMDetection builds. VOC and COCO use MMDetection's own lists
(``METAINFO`` of ``VOCDataset`` / ``CocoDataset``, imported on first use); COCO's official ids are matched by name.
"""

from __future__ import annotations

#: The generated set's 8 classes (``lossbench.data.synth.CLASS_SPECS``), confusable on purpose: red_disc / orange_disc
#: differ only in hue (25 deg), red_disc / red_ring and blue_square / blue_diamond only in shape.
SYNTH_CLASSES: tuple[str, ...] = (
    "red_disc", "orange_disc", "red_ring", "blue_square", "blue_diamond",
    "green_triangle", "yellow_star", "purple_cross")

#: dataset name (as ``lossbench prepare --dataset`` spells it) -> mmdet dataset class.
_MMDET = {"voc2007": "VOCDataset", "voc0712": "VOCDataset", "coco2017": "CocoDataset"}


def class_names(dataset: str) -> tuple[str, ...]:
    """The class order of ``dataset`` (synth, voc2007, voc0712 or coco2017)."""
    if dataset == "synth":
        return SYNTH_CLASSES
    if dataset not in _MMDET:
        raise KeyError(f"unknown dataset {dataset!r}; expected synth or one of {', '.join(_MMDET)}")
    import mmdet.datasets

    return tuple(getattr(mmdet.datasets, _MMDET[dataset]).METAINFO["classes"])


def __getattr__(name: str):
    """``CLASSES``: dataset -> class order, built on first use (it imports mmdet)."""
    if name == "CLASSES":
        return {d: class_names(d) for d in ("synth", *_MMDET)}
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
