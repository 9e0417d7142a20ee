# step.py with a narrower network: ResNet-18 base width 24 (32 in the study), FPN and towers 48 (64).
_base_ = './step.py'
model = dict(backbone=dict(base_channels=24),
             neck=dict(in_channels=[24, 48, 96, 192], out_channels=48),
             bbox_head=dict(in_channels=48, feat_channels=48))
