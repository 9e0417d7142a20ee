"""Data: the generated set (``synth``), real VOC / COCO (``fetch``), the COCO-format splits
training reads (``prepare``), class orders (``classes``) and the positive-anchor statistics
(``anchor_stats``). Submodules are imported on use (Pillow, requests or MMDetection)."""
