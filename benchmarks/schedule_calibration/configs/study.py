# The study's synth config unchanged (600 iterations, cosine): paired with a data variant
# (study@big_objects) it measures the data alone.
_base_ = '../../../configs/synth/retinanet_r18n_fpn_synth.py'
