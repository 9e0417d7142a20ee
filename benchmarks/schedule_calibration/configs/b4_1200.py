# Half the batch, twice the iterations (about the same images seen and compute): batch 4,
# cosine over 1,200 iterations; the lr follows the study's linear scaling (auto_scale_lr:
# 2e-3 at batch 8 -> 1e-3).
_base_ = '../../../configs/synth/retinanet_r18n_fpn_synth.py'
train_dataloader = dict(batch_size=4)
train_cfg = dict(max_iters=1200, val_interval=300)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=60),
    dict(type='CosineAnnealingLR', by_epoch=False, begin=60, end=1200, eta_min_ratio=0.01,
         convert_to_iter_based=False),
]
default_hooks = dict(checkpoint=dict(by_epoch=False, interval=300))
