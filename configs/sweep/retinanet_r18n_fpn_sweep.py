# Imbalance sweep: the synth profile's model, lr and schedule on a 192 px canvas, batch 4
# (192² x 4 pixels per step, twice the synth profile's 96² x 8); every point of the sweep
# (profiles.sweep_o*: 12, 4 or 1 object per image) trains with this one config. The lr is the
# synth profile's, not rescaled with the batch (AdamW).
_base_ = '../synth/retinanet_r18n_fpn_synth.py'
img_scale = (192, 192)
_test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=img_scale, keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='PackDetInputs',
         meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]
train_dataloader = dict(batch_size=4, dataset=dict(pipeline=[
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='Resize', scale=img_scale, keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs')]))
val_dataloader = dict(batch_size=8, dataset=dict(pipeline=_test_pipeline))
test_dataloader = dict(batch_size=8, dataset=dict(pipeline=_test_pipeline))
# the sweep validates once, at the end (its settings come from the main grid's selection)
train_cfg = dict(val_interval={{_base_.max_iters}})
auto_scale_lr = dict(enable=False)
