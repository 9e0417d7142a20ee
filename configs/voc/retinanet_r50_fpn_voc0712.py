# `voc` profile: VOC 2007+2012 trainval -> VOC 2007 test, ResNet-50-FPN with
# ImageNet init, 1000x600, MMDetection's VOC schedule (4 epochs over the
# dataset repeated 3 times, lr / 10 after epoch 3), 2 images per GPU on 8 GPUs.
_base_ = [
    '../_base_/models/retinanet_imbalance_r50_fpn.py',
    '../_base_/datasets/coco_format.py',
    '../_base_/schedules/schedule_1x.py',
    '../_base_/default_runtime.py',
]

img_scale = (1000, 600)
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
    batch_size=2, num_workers=2,
    dataset=dict(
        _delete_=True,
        type='RepeatDataset',
        times=3,
        dataset=dict(type='CocoDataset', data_root='data/voc/raw/',
                     ann_file='data/voc/prepared/train.json', data_prefix=dict(img=''),
                     filter_cfg=dict(filter_empty_gt=True, min_size=1),
                     pipeline=train_pipeline)))
test_dataloader = dict(dataset=dict(pipeline=test_pipeline))

model = dict(bbox_head=dict(num_classes=20))

max_epochs = 4
train_cfg = dict(max_epochs=max_epochs, val_interval=max_epochs)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=500),
    dict(type='MultiStepLR', begin=0, end=max_epochs, by_epoch=True, milestones=[3], gamma=0.1),
]
default_hooks = dict(checkpoint=dict(by_epoch=True, interval=1, max_keep_ckpts=1))
