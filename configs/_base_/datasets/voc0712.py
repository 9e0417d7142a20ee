# PASCAL VOC 07+12 as prepared by `lossbench prepare` (COCO-format JSON), 1000x600,
# the training set repeated 3 times per epoch as in MMDetection's VOC configs.
_base_ = './coco.py'
data_root = 'data/voc/raw/'
ann_dir = 'data/voc/prepared/'
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
    dataset=dict(
        _delete_=True,
        type='RepeatDataset',
        times=3,
        dataset=dict(type='CocoDataset', data_root=data_root, ann_file=ann_dir + 'train.json',
                     data_prefix=dict(img=''), filter_cfg=dict(filter_empty_gt=True, min_size=1),
                     pipeline=train_pipeline)))
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = dict(dataset=dict(pipeline=test_pipeline))
# VOC2007 test is also scored with the 11-point metric of SSD's 74.3 and MMDetection's VOC
# model zoo (`voc11/mAP`), beside the area metric and the COCO APs.
test_evaluator = [
    dict(type='VOCMetric', metric='mAP', eval_mode='area', iou_thrs=[0.5]),
    dict(type='VOCMetric', metric='mAP', eval_mode='11points', iou_thrs=[0.5], prefix='voc11'),
    dict(type='CocoMetric', ann_file=ann_dir + 'test.json', metric='bbox', format_only=False,
         backend_args=None),
]
