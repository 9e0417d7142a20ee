_test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(keep_ratio=True, scale=(
        192,
        192,
    ), type='Resize'),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(
        meta_keys=(
            'img_id',
            'img_path',
            'ori_shape',
            'img_shape',
            'scale_factor',
        ),
        type='PackDetInputs'),
]
ann_dir = 'data/synth/prepared/'
auto_scale_lr = dict(base_batch_size=8, enable=False)
backend_args = None
custom_hooks = [
    dict(run_name='sweep_o1/default/ohem/seed1', type='FiniteLossHook'),
    dict(
        dvclive_dir='runs/sweep/sweep_o1/default/ohem/seed1/dvclive',
        type='ResumedCurvesHook'),
    dict(max_norm=20.0, type='ClipFractionHook'),
    dict(type='ValHistoryHook'),
]
custom_imports = dict(
    allow_failed_imports=False, imports=[
        'lossbench.models.registry',
    ])
data_root = 'data/synth/raw/'
dataset_type = 'CocoDataset'
default_hooks = dict(
    checkpoint=dict(
        by_epoch=False,
        interval=150,
        max_keep_ckpts=2,
        save_last=True,
        type='CheckpointHook'),
    logger=dict(interval=10, type='LoggerHook'),
    param_scheduler=dict(type='ParamSchedulerHook'),
    sampler_seed=dict(type='DistSamplerSeedHook'),
    timer=dict(type='IterTimerHook'),
    visualization=dict(type='DetVisualizationHook'))
default_scope = 'mmdet'
env_cfg = dict(
    cudnn_benchmark=False,
    dist_cfg=dict(backend='nccl'),
    mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0))
experiment_name = 'sweep_o1_default_ohem_seed1'
img_scale = (
    192,
    192,
)
load_from = None
log_level = 'INFO'
log_processor = dict(by_epoch=False, type='LogProcessor', window_size=10)
max_iters = 600
model = dict(
    backbone=dict(
        base_channels=32,
        depth=18,
        frozen_stages=-1,
        init_cfg=None,
        norm_cfg=dict(requires_grad=True, type='BN'),
        norm_eval=False,
        num_stages=4,
        out_indices=(
            0,
            1,
            2,
            3,
        ),
        style='pytorch',
        type='ResNet'),
    bbox_head=dict(
        anchor_generator=dict(
            octave_base_scale=2,
            ratios=[
                0.5,
                1.0,
                2.0,
            ],
            scales_per_octave=3,
            strides=[
                8,
                16,
                32,
                64,
                128,
            ],
            type='AnchorGenerator'),
        bbox_coder=dict(
            target_means=[
                0.0,
                0.0,
                0.0,
                0.0,
            ],
            target_stds=[
                1.0,
                1.0,
                1.0,
                1.0,
            ],
            type='DeltaXYWHBBoxCoder'),
        feat_channels=64,
        imbalance=dict(neg_pos_ratio=3.0, type='ohem'),
        in_channels=64,
        loss_bbox=dict(loss_weight=1.0, type='L1Loss'),
        num_classes=8,
        prior_prob=0.01,
        stacked_convs=2,
        type='ImbalanceRetinaHead'),
    data_preprocessor=dict(
        bgr_to_rgb=True,
        mean=[
            123.675,
            116.28,
            103.53,
        ],
        pad_size_divisor=32,
        std=[
            58.395,
            57.12,
            57.375,
        ],
        type='DetDataPreprocessor'),
    neck=dict(
        add_extra_convs='on_input',
        in_channels=[
            32,
            64,
            128,
            256,
        ],
        num_outs=5,
        out_channels=64,
        start_level=1,
        type='FPN'),
    test_cfg=dict(
        max_per_img=100,
        min_bbox_size=0,
        nms=dict(iou_threshold=0.5, type='nms'),
        nms_pre=1000,
        score_thr=0.001),
    train_cfg=dict(
        allowed_border=-1,
        assigner=dict(
            ignore_iof_thr=-1,
            min_pos_iou=0,
            neg_iou_thr=0.4,
            pos_iou_thr=0.5,
            type='MaxIoUAssigner'),
        debug=False,
        pos_weight=-1,
        sampler=dict(type='PseudoSampler')),
    type='RetinaNet')
optim_wrapper = dict(
    clip_grad=dict(max_norm=20.0, norm_type=2),
    optimizer=dict(foreach=True, lr=0.002, type='AdamW', weight_decay=0.0001),
    type='OptimWrapper')
param_scheduler = [
    dict(begin=0, by_epoch=False, end=30, start_factor=0.01, type='LinearLR'),
    dict(
        begin=30,
        by_epoch=False,
        convert_to_iter_based=False,
        end=600,
        eta_min_ratio=0.01,
        type='CosineAnnealingLR'),
]
randomness = dict(deterministic=True, diff_rank_seed=False, seed=1)
resume = False
test_cfg = dict(type='TestLoop')
test_dataloader = dict(
    batch_size=8,
    dataset=dict(
        ann_file='/tmp/sweeprun/data/sweep_o1/prepared/test.json',
        backend_args=None,
        data_prefix=dict(img=''),
        data_root='/tmp/sweeprun/data/sweep_o1/raw',
        metainfo=dict(
            classes=(
                'red_disc',
                'orange_disc',
                'red_ring',
                'blue_square',
                'blue_diamond',
                'green_triangle',
                'yellow_star',
                'purple_cross',
            )),
        pipeline=[
            dict(type='LoadImageFromFile'),
            dict(keep_ratio=True, scale=(
                192,
                192,
            ), type='Resize'),
            dict(type='LoadAnnotations', with_bbox=True),
            dict(
                meta_keys=(
                    'img_id',
                    'img_path',
                    'ori_shape',
                    'img_shape',
                    'scale_factor',
                ),
                type='PackDetInputs'),
        ],
        test_mode=True,
        type='CocoDataset'),
    drop_last=False,
    num_workers=0,
    persistent_workers=False,
    sampler=dict(shuffle=False, type='DefaultSampler'))
test_evaluator = [
    dict(eval_mode='area', iou_thrs=[
        0.5,
    ], metric='mAP', type='VOCMetric'),
    dict(
        out_file='runs/sweep/sweep_o1/default/ohem/seed1/test_records.npz',
        type='DetectionRecords'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(keep_ratio=True, scale=(
        128,
        128,
    ), type='Resize'),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(
        meta_keys=(
            'img_id',
            'img_path',
            'ori_shape',
            'img_shape',
            'scale_factor',
        ),
        type='PackDetInputs'),
]
train_cfg = dict(max_iters=600, type='IterBasedTrainLoop', val_interval=600)
train_dataloader = dict(
    batch_sampler=None,
    batch_size=4,
    dataset=dict(
        ann_file='/tmp/sweeprun/data/sweep_o1/prepared/train.json',
        backend_args=None,
        data_prefix=dict(img=''),
        data_root='/tmp/sweeprun/data/sweep_o1/raw',
        filter_cfg=dict(filter_empty_gt=True, min_size=1),
        metainfo=dict(
            classes=(
                'red_disc',
                'orange_disc',
                'red_ring',
                'blue_square',
                'blue_diamond',
                'green_triangle',
                'yellow_star',
                'purple_cross',
            )),
        pipeline=[
            dict(type='LoadImageFromFile'),
            dict(type='LoadAnnotations', with_bbox=True),
            dict(keep_ratio=True, scale=(
                192,
                192,
            ), type='Resize'),
            dict(prob=0.5, type='RandomFlip'),
            dict(type='PackDetInputs'),
        ],
        type='CocoDataset'),
    num_workers=0,
    persistent_workers=False,
    sampler=dict(shuffle=True, type='InfiniteSampler'))
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(keep_ratio=True, scale=(
        128,
        128,
    ), type='Resize'),
    dict(prob=0.5, type='RandomFlip'),
    dict(type='PackDetInputs'),
]
val_cfg = dict(type='ValLoop')
val_dataloader = dict(
    batch_size=8,
    dataset=dict(
        ann_file='/tmp/sweeprun/data/sweep_o1/prepared/val.json',
        backend_args=None,
        data_prefix=dict(img=''),
        data_root='/tmp/sweeprun/data/sweep_o1/raw',
        metainfo=dict(
            classes=(
                'red_disc',
                'orange_disc',
                'red_ring',
                'blue_square',
                'blue_diamond',
                'green_triangle',
                'yellow_star',
                'purple_cross',
            )),
        pipeline=[
            dict(type='LoadImageFromFile'),
            dict(keep_ratio=True, scale=(
                192,
                192,
            ), type='Resize'),
            dict(type='LoadAnnotations', with_bbox=True),
            dict(
                meta_keys=(
                    'img_id',
                    'img_path',
                    'ori_shape',
                    'img_shape',
                    'scale_factor',
                ),
                type='PackDetInputs'),
        ],
        test_mode=True,
        type='CocoDataset'),
    drop_last=False,
    num_workers=0,
    persistent_workers=False,
    sampler=dict(shuffle=False, type='DefaultSampler'))
val_evaluator = dict(
    eval_mode='area', iou_thrs=[
        0.5,
    ], metric='mAP', type='VOCMetric')
vis_backends = [
    dict(type='LocalVisBackend'),
]
visualizer = dict(
    name='visualizer',
    type='DetLocalVisualizer',
    vis_backends=[
        dict(type='LocalVisBackend'),
        dict(
            artifact_suffix=(),
            init_kwargs=dict(
                cache_images=False,
                dvcyaml=False,
                monitor_system=False,
                report=None,
                resume=False,
                save_dvc_exp=False),
            save_dir='runs/sweep/sweep_o1/default/ohem/seed1/dvclive',
            type='DVCLiveVisBackend'),
    ])
warmup_iters = 30
work_dir = '/tmp/sweeprun/work_dirs/sweep/sweep_o1/default/ohem/seed1'
