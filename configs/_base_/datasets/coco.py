# COCO-format JSON written by `lossbench prepare`: <ann_dir>/{train,val,test}.json with
# `file_name` relative to `data_root`. The train stage sets `data_root`, the annotation
# files and `metainfo.classes` from --data-root / --ann-dir; a profile config sets the
# batch size and the number of loader workers.
dataset_type = 'CocoDataset'
data_root = 'data/coco/raw/'
ann_dir = 'data/coco/prepared/'
img_scale = (1333, 800)
backend_args = None

train_pipeline = [
    dict(type='LoadImageFromFile', backend_args=backend_args),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='Resize', scale=img_scale, keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile', backend_args=backend_args),
    dict(type='Resize', scale=img_scale, keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='PackDetInputs',
         meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]

train_dataloader = dict(
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    batch_sampler=dict(type='AspectRatioBatchSampler'),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        ann_file=ann_dir + 'train.json',
        data_prefix=dict(img=''),
        filter_cfg=dict(filter_empty_gt=True, min_size=1),
        pipeline=train_pipeline,
        backend_args=backend_args))
test_dataloader = dict(
    persistent_workers=True,
    drop_last=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        ann_file=ann_dir + 'test.json',
        data_prefix=dict(img=''),
        test_mode=True,
        pipeline=test_pipeline,
        backend_args=backend_args))

# The study selects settings on `val` and reports `test` (three disjoint splits written by
# `lossbench prepare`). Both are scored with mAP@0.5 the VOC way (area under the
# interpolated PR curve) and the COCO APs.
val_dataloader = dict(
    persistent_workers=True,
    drop_last=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        ann_file=ann_dir + 'val.json',
        data_prefix=dict(img=''),
        test_mode=True,
        pipeline=test_pipeline,
        backend_args=backend_args))
val_evaluator = [
    dict(type='VOCMetric', metric='mAP', eval_mode='area', iou_thrs=[0.5]),
    dict(type='CocoMetric', ann_file=ann_dir + 'val.json', metric='bbox', format_only=False,
         backend_args=backend_args),
]
test_evaluator = [
    dict(type='VOCMetric', metric='mAP', eval_mode='area', iou_thrs=[0.5]),
    dict(type='CocoMetric', ann_file=ann_dir + 'test.json', metric='bbox', format_only=False,
         backend_args=backend_args),
]
val_cfg = dict(type='ValLoop')  # train_cfg and test_cfg belong to the schedule
