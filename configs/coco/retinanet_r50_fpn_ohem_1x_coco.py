# SSD's hard negative mining, 3 negatives per positive.
_base_ = './retinanet_r50_fpn_1x_coco.py'
model = dict(bbox_head=dict(imbalance=dict(_delete_=True, type='ohem', neg_pos_ratio=3)))
