# `coco` profile: COCO 2017 train -> val2017, ResNet-50-FPN with ImageNet
# init, 1333x800, the RetinaNet paper's 1x schedule (12 epochs, lr / 10 at 8
# and 11), 2 images per GPU on 8 GPUs (total batch 16, lr 0.01).
_base_ = [
    '../_base_/models/retinanet_imbalance_r50_fpn.py',
    '../_base_/datasets/coco_format.py',
    '../_base_/schedules/schedule_1x.py',
    '../_base_/default_runtime.py',
]
model = dict(bbox_head=dict(num_classes=80))
default_hooks = dict(checkpoint=dict(by_epoch=True, interval=1, max_keep_ckpts=1))
