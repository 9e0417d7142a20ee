# `voc` profile: VOC 2007+2012 trainval -> VOC 2007 test, ResNet-50-FPN with ImageNet
# init, 1000x600, MMDetection's VOC schedule (4 epochs over the training set repeated
# 3 times, lr / 10 after epoch 3). 16 images per GPU in bf16 mixed precision (one
# >= 80 GB GPU holds the paper's total batch); lr 0.01 is for a total batch of 16 and
# scales linearly with GPUs x batch. For the paper's 8 GPUs x 2 images:
# --cfg-options train_dataloader.batch_size=2.
_base_ = [
    '../_base_/models/retinanet_imbalance_r50_fpn.py',
    '../_base_/datasets/voc0712.py',
    '../_base_/schedules/schedule_1x.py',
    '../_base_/default_runtime.py',
]
model = dict(bbox_head=dict(num_classes=20))

train_dataloader = dict(batch_size=16, num_workers=8)
val_dataloader = dict(batch_size=1, num_workers=8)
test_dataloader = dict(batch_size=1, num_workers=8)
optim_wrapper = dict(type='AmpOptimWrapper', dtype='bfloat16')

max_epochs = 4
train_cfg = dict(max_epochs=max_epochs, val_interval=max_epochs)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=500),
    dict(type='MultiStepLR', begin=0, end=max_epochs, by_epoch=True, milestones=[3], gamma=0.1),
]
default_hooks = dict(checkpoint=dict(by_epoch=True, interval=1))
