# `coco` profile: COCO 2017 train -> val2017, ResNet-50-FPN with ImageNet init,
# 1333x800, the RetinaNet paper's 1x schedule (12 epochs, lr / 10 at 8 and 11).
# 16 images per GPU in bf16 mixed precision (one >= 80 GB GPU holds the paper's total
# batch); lr 0.01 is for a total batch of 16 and scales linearly with GPUs x batch.
# For the paper's 8 GPUs x 2 images: --cfg-options train_dataloader.batch_size=2.
_base_ = [
    '../_base_/models/retinanet_imbalance_r50_fpn.py',
    '../_base_/datasets/coco.py',
    '../_base_/schedules/schedule_1x.py',
    '../_base_/default_runtime.py',
]
model = dict(bbox_head=dict(num_classes=80))

train_dataloader = dict(batch_size=16, num_workers=8)
val_dataloader = dict(batch_size=1, num_workers=8)
test_dataloader = dict(batch_size=1, num_workers=8)
optim_wrapper = dict(type='AmpOptimWrapper', dtype='bfloat16')
default_hooks = dict(checkpoint=dict(by_epoch=True, interval=1))
