# The study's synth config with twice the peak lr (AdamW 4e-3 for a batch of 8; the study 2e-3).
_base_ = '../../../configs/synth/retinanet_r18n_fpn_synth.py'
optim_wrapper = dict(optimizer=dict(lr=4e-3))
