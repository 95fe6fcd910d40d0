# Linear probing (frozen backbone): BN + 1x1 conv on block 23.
# Backbone: InternViT-300M-448px (Hugging Face, format B); no published numbers: a first baseline.
# AdamW lr 4e-5, wd 0, warmup 1500, poly to 0 at 80k, batch 16 (8 GPUs x 2), crop 504, slide 504/322.
_base_ = '../_base_/recipes/linear_frozen.py'
model = dict(backbone=dict(arch='300m', out_indices=(23, ),
                           init_cfg=dict(type='Pretrained', checkpoint='checkpoints/InternViT-300M-448px')),
             decode_head=dict(in_channels=1024, channels=1024))
