# Head tuning (frozen backbone): pyramid + UperNet (channels 1024) on blocks [5, 11, 17, 23], aux FCN on the 2x level.
# Backbone: InternViT-300M-448px (Hugging Face, format B); no published numbers: a first baseline.
# Data: coco-stuff164k (mmcfg/_base_/datasets/coco-stuff164k_504x504.py).
_base_ = '../_base_/recipes/upernet_frozen_coco-stuff164k.py'
model = dict(backbone=dict(arch='300m', out_indices=(5, 11, 17, 23),
                           init_cfg=dict(type='Pretrained', checkpoint='checkpoints/InternViT-300M-448px')),
             neck=dict(in_channels=1024), decode_head=dict(in_channels=[1024] * 4, channels=1024),
             auxiliary_head=dict(in_channels=1024))
