# The synth config with a schedule twice as long: cosine over 1200 iterations.
_base_ = '../../../configs/synth/retinanet_r18n_fpn_synth.py'
train_cfg = dict(max_iters=1200, val_interval=300)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=30),
    dict(type='CosineAnnealingLR', by_epoch=False, begin=30, end=1200, eta_min_ratio=0.01,
         convert_to_iter_based=False),
]
default_hooks = dict(checkpoint=dict(by_epoch=False, interval=300))
