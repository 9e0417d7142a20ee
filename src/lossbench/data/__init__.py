"""Data: the generated set (``synth``, a package: its parameters, rendering,
files and statistics), real VOC / COCO (``fetch``) and the COCO-format splits
training reads (``prepare``). Class orders live in ``classes``; the
positive-anchor statistics of the common architecture in ``anchor_stats``.
Submodules are imported on use (they pull in Pillow, requests or MMDetection).
"""
