# Linear probing (frozen backbone): BN + 1x1 conv on block 44.
# Backbone: InternViT-6B-224px (InternVL release, format A).
# Data: pascal-context-59 (mmcfg/_base_/datasets/pascal-context-59_476x476.py).
_base_ = '../_base_/recipes/linear_frozen_pascal-context-59.py'
model = dict(backbone=dict(arch='6b', out_indices=(44, ),
                           init_cfg=dict(type='Pretrained', checkpoint='checkpoints/intern_vit_6b_224px.pth')),
             decode_head=dict(in_channels=3200, channels=3200))
