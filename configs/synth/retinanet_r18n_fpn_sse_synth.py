# YOLO v1's sum-squared error, the paper's lambda_noobj = 0.5, IoU objectness target.
_base_ = './retinanet_r18n_fpn_synth.py'
model = dict(bbox_head=dict(imbalance=dict(_delete_=True, type='sse', lambda_noobj=0.5,
                                           obj_target='iou')))
