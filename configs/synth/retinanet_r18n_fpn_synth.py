# `synth` profile: the generated set at 96 px, a narrow ResNet-18 RetinaNet fine-tuned
# from a pretrained backbone on the CPU. Everything a run does is here (through `_base_`), except
# the data paths, the family's knob and the seed, which the train stage's command
# line gives (see lossbench/training/config.py).
_base_ = [
    '../_base_/models/retinanet_imbalance_r18n_fpn.py',
    '../_base_/datasets/synth.py',
    '../_base_/default_runtime.py',
]
# Anchors fitted to the generated objects (16-48 px): RetinaNet's octave_base_scale 4 puts
# the smallest anchor at 32 px, so 40% of objects had no anchor at IoU >= 0.5;
# 2 gives 16-25 px on P3 ... 64-101 px on P5 (1% of objects without an anchor, see
# data/<profile>/raw/stats.json). Ratios, scales per octave and strides are RetinaNet's.
model = dict(
    # The backbone pretrained once as a shape classifier on images no detection set holds
    # (`lossbench pretrain`, DVC stage pretrain), loaded as the voc/coco profiles load ImageNet
    # weights: stem and first stage frozen, BN statistics fixed.
    backbone=dict(frozen_stages=1, norm_eval=True,
                  init_cfg=dict(_delete_=True, type='Pretrained',
                                checkpoint='runs/synth/pretrain/backbone.pth')),
    bbox_head=dict(num_classes=8, anchor_generator=dict(octave_base_scale=2)))
# NHWC convolutions: the faster layout on the CPU (make bench)
custom_imports = dict(imports=['lossbench.models.registry', 'lossbench.training.hooks'],
                      allow_failed_imports=False)
custom_hooks = [dict(type='ChannelsLastHook')]

img_scale = (96, 96)
train_dataloader = dict(batch_size=8, num_workers=0, persistent_workers=False,
                        dataset=dict(pipeline=[
                            dict(type='LoadImageFromFile'),
                            dict(type='LoadAnnotations', with_bbox=True),
                            dict(type='Resize', scale=img_scale, keep_ratio=True),
                            dict(type='RandomFlip', prob=0.5),
                            dict(type='PackDetInputs')]))
_test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=img_scale, keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='PackDetInputs',
         meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]
val_dataloader = dict(batch_size=32, num_workers=0, persistent_workers=False,
                      dataset=dict(pipeline=_test_pipeline))
test_dataloader = dict(batch_size=32, num_workers=0, persistent_workers=False,
                       dataset=dict(pipeline=_test_pipeline))
# The study's metric is VOC mAP@0.5 (area) on both splits; the COCO APs are left to the
# voc/coco profiles (pycocotools on 100 boxes x 1,000 images costs a third of a run's test).
val_evaluator = dict(_delete_=True, type='VOCMetric', metric='mAP', eval_mode='area',
                     iou_thrs=[0.5])
test_evaluator = dict(_delete_=True, type='VOCMetric', metric='mAP', eval_mode='area',
                      iou_thrs=[0.5])

# AdamW, linear warm-up over 5% of the schedule, cosine decay to 1% of the lr. T = 2,400
# iterations of batch 8 (9.6 epochs of the 2,000 training images); the calibration trains the
# paper defaults and val-bests at 2T (`lossbench train --iters`, params.yaml: calibration).
max_iters = 2400
warmup_iters = max_iters // 20
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=max_iters // 4)
test_cfg = dict(type='TestLoop')
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=2e-3, weight_decay=1e-4, fused=True),  # fused: faster on the CPU
    # one clipping policy for every family (chosen on measured gradient norms, see
    # docs/study.md); the fraction of clipped steps is in each run's metrics.json
    clip_grad=dict(max_norm=20.0, norm_type=2))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=warmup_iters),
    dict(type='CosineAnnealingLR', by_epoch=False, begin=warmup_iters, end=max_iters,
         eta_min_ratio=0.01, convert_to_iter_based=False),
]
# the lr above is for a total batch of 8 (processes x batch per process), scaled linearly
auto_scale_lr = dict(enable=True, base_batch_size=8)
default_hooks = dict(checkpoint=dict(by_epoch=False, interval=max_iters // 8))
