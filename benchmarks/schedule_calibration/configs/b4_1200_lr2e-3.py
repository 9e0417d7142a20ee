# b4_1200 with the lr held at 2e-3 (no linear scaling for the smaller batch).
_base_ = './b4_1200.py'
auto_scale_lr = dict(enable=False)
