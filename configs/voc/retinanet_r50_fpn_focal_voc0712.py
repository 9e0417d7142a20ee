# RetinaNet's focal loss, gamma = 2, alpha = 0.25.
_base_ = './retinanet_r50_fpn_voc0712.py'
model = dict(bbox_head=dict(imbalance=dict(_delete_=True, type='focal', gamma=2.0, alpha=0.25)))
