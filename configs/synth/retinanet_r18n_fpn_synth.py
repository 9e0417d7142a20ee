# `synth` profile: the generated set at 128 px, a narrow ResNet-18 RetinaNet trained
# from scratch on the CPU. Everything a run does is here (through `_base_`), except
# the data paths, the family's knob and the seed, which the train stage's command
# line gives (see lossbench/config.py).
_base_ = [
    '../_base_/models/retinanet_imbalance_r18n_fpn.py',
    '../_base_/datasets/synth.py',
    '../_base_/default_runtime.py',
]
model = dict(bbox_head=dict(num_classes=8))

train_dataloader = dict(batch_size=8, num_workers=0, persistent_workers=False)
test_dataloader = dict(batch_size=16, num_workers=0, persistent_workers=False)

# AdamW, linear warm-up over the first 22 iterations, cosine decay to 1% of the lr.
max_iters = 260
warmup_iters = 22
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=max_iters)
test_cfg = dict(type='TestLoop')
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=2e-3, weight_decay=1e-4, foreach=True),
    clip_grad=dict(max_norm=10.0, norm_type=2))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=warmup_iters),
    dict(type='CosineAnnealingLR', by_epoch=False, begin=warmup_iters, end=max_iters,
         eta_min_ratio=0.01, convert_to_iter_based=False),
]
# the lr above is for a total batch of 8 (processes x batch per process), scaled linearly
auto_scale_lr = dict(enable=True, base_batch_size=8)
default_hooks = dict(checkpoint=dict(by_epoch=False, interval=100))
