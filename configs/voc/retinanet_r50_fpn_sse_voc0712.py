# YOLO v1's sum-squared error, lambda_noobj = 0.5.
_base_ = './retinanet_r50_fpn_voc0712.py'
model = dict(bbox_head=dict(imbalance=dict(_delete_=True, type='sse', lambda_noobj=0.5, obj_target='iou')))
