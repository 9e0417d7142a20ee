# The common architecture scaled down for CPU runs: a narrow ResNet-18
# (base width 32), FPN and towers 64 wide, 2 convs per tower. Anchors, assigner,
# box loss and test-time NMS are the RetinaNet ones. Built here from scratch; the synth
# profiles load its pretrained weights (configs/synth).
_base_ = './retinanet_imbalance_r50_fpn.py'

model = dict(
    backbone=dict(
        depth=18,
        base_channels=32,
        frozen_stages=-1,
        norm_eval=False,  # from scratch: BN statistics must move
        init_cfg=None),
    neck=dict(in_channels=[32, 64, 128, 256], out_channels=64),
    bbox_head=dict(in_channels=64, feat_channels=64, stacked_convs=2))
