# Short from-scratch schedule for CPU runs: AdamW, linear warm-up, cosine decay.
# `lossbench.config.load_config(max_iters=...)` rescales the iteration counts.
max_iters = 600
warmup_iters = 50
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
# lr is for a total batch of 8 (GPUs x batch per GPU) and scaled linearly otherwise
auto_scale_lr = dict(enable=True, base_batch_size=8)
