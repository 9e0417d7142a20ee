# `synth` profile: the generated set (lossbench synth), 128 px images,
# a narrow ResNet-18 RetinaNet trained from scratch on the CPU.
_base_ = [
    '../_base_/models/retinanet_imbalance_r18n_fpn.py',
    '../_base_/datasets/coco_format.py',
    '../_base_/schedules/iter_adamw_synth.py',
    '../_base_/default_runtime.py',
]

img_scale = (128, 128)
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='Resize', scale=img_scale, keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=img_scale, keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='PackDetInputs',
         meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]
train_dataloader = dict(
    batch_size=8, num_workers=0, persistent_workers=False,
    sampler=dict(type='InfiniteSampler', shuffle=True), batch_sampler=None,
    dataset=dict(pipeline=train_pipeline))
test_dataloader = dict(
    batch_size=16, num_workers=0, persistent_workers=False,
    dataset=dict(pipeline=test_pipeline))

model = dict(
    data_preprocessor=dict(pad_size_divisor=32),
    bbox_head=dict(num_classes=8))
