"""Class lists of the study's datasets, in the fixed order training uses.

Every prepared COCO-format JSON numbers its categories ``1..C`` in exactly the
order of these tuples, so ``CLASSES[dataset][k - 1]`` is the name of category
``k`` and a config's ``metainfo=dict(classes=CLASSES[dataset])`` lines up with
the labels MMDetection builds from the JSON.
"""

from __future__ import annotations

#: PASCAL VOC's 20 classes, in the devkit's (alphabetical) order.
VOC_CLASSES: tuple[str, ...] = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat",
    "chair", "cow", "diningtable", "dog", "horse", "motorbike", "person",
    "pottedplant", "sheep", "sofa", "train", "tvmonitor",
)

#: COCO's 80 thing classes, ordered by their official (non-contiguous) ids.
COCO_CLASSES: tuple[str, ...] = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train",
    "truck", "boat", "traffic light", "fire hydrant", "stop sign",
    "parking meter", "bench", "bird", "cat", "dog", "horse", "sheep", "cow",
    "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella", "handbag",
    "tie", "suitcase", "frisbee", "skis", "snowboard", "sports ball", "kite",
    "baseball bat", "baseball glove", "skateboard", "surfboard",
    "tennis racket", "bottle", "wine glass", "cup", "fork", "knife", "spoon",
    "bowl", "banana", "apple", "sandwich", "orange", "broccoli", "carrot",
    "hot dog", "pizza", "donut", "cake", "chair", "couch", "potted plant",
    "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote",
    "keyboard", "cell phone", "microwave", "oven", "toaster", "sink",
    "refrigerator", "book", "clock", "vase", "scissors", "teddy bear",
    "hair drier", "toothbrush",
)

#: The official COCO 2017 category id of each entry of ``COCO_CLASSES``
#: (1..90 without 12, 26, 29, 30, 45, 66, 68, 69, 71, 83).
COCO_CATEGORY_IDS: tuple[int, ...] = tuple(
    i for i in range(1, 91) if i not in (12, 26, 29, 30, 45, 66, 68, 69, 71, 83)
)

#: The generated set's 8 classes (see ``lossbench.data.synth.CLASS_SPECS``).
#: Confusable on purpose: red_disc / orange_disc differ only in hue (25 deg),
#: red_disc / red_ring and blue_square / blue_diamond only in shape.
SYNTH_CLASSES: tuple[str, ...] = (
    "red_disc", "orange_disc", "red_ring", "blue_square", "blue_diamond",
    "green_triangle", "yellow_star", "purple_cross",
)

#: dataset name (as ``lossbench prepare --dataset`` spells it) -> class order.
CLASSES: dict[str, tuple[str, ...]] = {
    "synth": SYNTH_CLASSES,
    "voc2007": VOC_CLASSES,
    "voc0712": VOC_CLASSES,
    "coco2017": COCO_CLASSES,
}

assert len(VOC_CLASSES) == 20 and len(COCO_CLASSES) == 80
assert len(COCO_CATEGORY_IDS) == 80
