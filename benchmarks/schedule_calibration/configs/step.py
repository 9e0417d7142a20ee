# The synth config with RetinaNet's step schedule: lr x0.1 at 2/3 and 8/9 of the iterations
# (400 and 533 of 600) instead of the cosine decay.
_base_ = '../../../configs/synth/retinanet_r18n_fpn_synth.py'
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=30),
    dict(type='MultiStepLR', by_epoch=False, begin=0, end=600, milestones=[400, 533], gamma=0.1),
]
