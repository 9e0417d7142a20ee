# `smoke` profile: the synth config cut to 4 iterations of 2 images, so the whole
# pipeline runs in seconds (the test suite runs it on a copy of the repository).
_base_ = '../synth/retinanet_r18n_fpn_synth.py'

# from scratch: the tests train this config without a pretraining stage before them
model = dict(backbone=dict(frozen_stages=-1, norm_eval=False, init_cfg=None))
train_dataloader = dict(batch_size=2)
max_iters = 4
train_cfg = dict(max_iters=max_iters, val_interval=max_iters // 2)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=1),
    dict(type='CosineAnnealingLR', by_epoch=False, begin=1, end=max_iters,
         eta_min_ratio=0.01, convert_to_iter_based=False),
]
default_hooks = dict(logger=dict(interval=1), checkpoint=dict(interval=max_iters))
