"""lossbench: how one-stage detectors handle the foreground/background imbalance.

Three classification losses (YOLO v1's sum-squared error, SSD's hard-negative mined cross-entropy and RetinaNet's focal
loss) are swapped into one common RetinaNet architecture built by MMDetection.
"""

__version__ = "0.1.0"
