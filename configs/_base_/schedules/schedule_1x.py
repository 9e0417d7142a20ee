# The RetinaNet paper's schedule (Lin et al. 2017, Sec. 4.1) in MMDetection's
# 1x form: SGD, lr 0.01 for a total batch of 16, momentum 0.9, weight decay
# 1e-4, linear warm-up, lr / 10 at epochs 8 and 11 of 12.
max_epochs = 12
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs, val_interval=max_epochs)
test_cfg = dict(type='TestLoop')

optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='SGD', lr=0.01, momentum=0.9, weight_decay=0.0001))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=500),
    dict(type='MultiStepLR', begin=0, end=max_epochs, by_epoch=True, milestones=[8, 11],
         gamma=0.1),
]
# lr is scaled linearly with the total batch (GPUs x batch per GPU) when enabled
auto_scale_lr = dict(enable=True, base_batch_size=16)
