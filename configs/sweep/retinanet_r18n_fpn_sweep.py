# Imbalance sweep: one config for every point (profiles.sweep_c*: 96, 192 or 320 px canvases,
# each image holding the same scene of 4 labelled objects of 16-40 px and 2 distractors). The
# synth profile's model with its pretrained backbone, lr and optimizer; batch 4 at every point
# and images kept at their canvas size (no rescaling), so every step sees 16 labelled objects
# and only the background area, the anchors over it (easy negatives) and the compute grow with
# the canvas. The lr is the synth profile's, not rescaled with the batch (AdamW).
_base_ = '../synth/retinanet_r18n_fpn_synth.py'
# Resize by 1.0: the image keeps its canvas size, and scale_factor (1, 1) is still set, so the
# test-time rescale maps boxes back unchanged. The data preprocessor pads to a multiple of 32
# (96, 192 and 320 already are: every anchor lies over the image).
img_scale = None  # no fixed input size: each point's canvas (profiles.sweep_c*.data.image_size)
_keep_size = dict(type='Resize', scale_factor=1.0, keep_ratio=True)
_test_pipeline = [
    dict(type='LoadImageFromFile'),
    _keep_size,
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='PackDetInputs',
         meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]
train_dataloader = dict(batch_size=4, dataset=dict(pipeline=[
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True),
    _keep_size,
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs')]))
val_dataloader = dict(batch_size=8, dataset=dict(pipeline=_test_pipeline))
test_dataloader = dict(batch_size=8, dataset=dict(pipeline=_test_pipeline))
auto_scale_lr = dict(enable=False)

# The sweep's own schedule, written out as the synth config writes its own: T_sweep = 800
# iterations of batch 4 (12,800 labelled objects per run at every point), linear warm-up over
# 5 % then cosine to 1 % of the lr, a checkpoint every 1/8, val once at the end (the settings
# come from the main grid's selection). 1,000 iterations would not fit `make sweep` in 2 h on a
# 2-core machine (docs/study.md, "The imbalance sweep").
max_iters = 800
warmup_iters = max_iters // 20
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=max_iters)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=warmup_iters),
    dict(type='CosineAnnealingLR', by_epoch=False, begin=warmup_iters, end=max_iters,
         eta_min_ratio=0.01, convert_to_iter_based=False),
]
default_hooks = dict(checkpoint=dict(by_epoch=False, interval=max_iters // 8))
