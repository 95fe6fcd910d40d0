# Head tuning (frozen backbone): pyramid + UperNet (channels 1536) on blocks [11, 23, 35, 47], aux FCN on the 2x level.
# Backbone: InternViT-6B-224px (InternVL release, format A).
# Data: pascal-context-59 (mmcfg/_base_/datasets/pascal-context-59_476x476.py).
_base_ = '../_base_/recipes/upernet_frozen_pascal-context-59.py'
model = dict(backbone=dict(arch='6b', out_indices=(11, 23, 35, 47),
                           init_cfg=dict(type='Pretrained', checkpoint='checkpoints/intern_vit_6b_224px.pth')),
             neck=dict(in_channels=3200), decode_head=dict(in_channels=[3200] * 4, channels=1536),
             auxiliary_head=dict(in_channels=3200))
