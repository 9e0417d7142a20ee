# RetinaNet's focal loss, the paper's default gamma = 2, alpha = 0.25.
_base_ = './retinanet_r18n_fpn_synth.py'
model = dict(bbox_head=dict(imbalance=dict(_delete_=True, type='focal', gamma=2.0, alpha=0.25)))
