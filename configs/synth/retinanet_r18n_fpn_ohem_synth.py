# SSD's softmax CE with hard negative mining, the paper's 3 negatives per positive.
_base_ = './retinanet_r18n_fpn_synth.py'
model = dict(bbox_head=dict(imbalance=dict(_delete_=True, type='ohem', neg_pos_ratio=3)))
