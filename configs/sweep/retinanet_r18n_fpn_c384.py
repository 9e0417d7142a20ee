# Imbalance sweep, canvas 384 px: the synth profile's model and schedule with the canvas
# and batch changed so that pixels per step stay constant (96 px x 16 = 192 px x 4 =
# 384 px x 1); the lr is not rescaled with the batch (AdamW, same lr at every canvas).
_base_ = '../synth/retinanet_r18n_fpn_synth.py'
img_scale = (384, 384)
_test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=img_scale, keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='PackDetInputs',
         meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]
train_dataloader = dict(batch_size=1, dataset=dict(pipeline=[
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='Resize', scale=img_scale, keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs')]))
val_dataloader = dict(batch_size=2, dataset=dict(pipeline=_test_pipeline))
test_dataloader = dict(batch_size=2, dataset=dict(pipeline=_test_pipeline))
# the sweep validates once, at the end (its settings come from the main grid's selection)
train_cfg = dict(val_interval={{_base_.max_iters}})
auto_scale_lr = dict(enable=False)
