# Linear probing (frozen backbone): BN + 1x1 conv on block 23.
# Backbone: InternViT-300M-448px (Hugging Face, format B); no published numbers: a first baseline.
# Data: cityscapes (mmcfg/_base_/datasets/cityscapes_504x1008.py).
_base_ = '../_base_/recipes/linear_frozen_cityscapes.py'
model = dict(backbone=dict(arch='300m', out_indices=(23, ),
                           init_cfg=dict(type='Pretrained', checkpoint='checkpoints/InternViT-300M-448px')),
             decode_head=dict(in_channels=1024, channels=1024))
