# Linear probing (frozen backbone): BN + 1x1 conv on block 44.
# Backbone: InternViT-6B-448px-V2_5 (Hugging Face, format B).
# AdamW lr 4e-5, wd 0, warmup 1500, poly to 0 at 80k, batch 16 (8 GPUs x 2), crop 504, slide 504/322.
_base_ = '../_base_/recipes/linear_frozen.py'
model = dict(backbone=dict(arch='6b-448px-v2.5', out_indices=(44, ),
                           init_cfg=dict(type='Pretrained', checkpoint='checkpoints/InternViT-6B-448px-V2_5')),
             decode_head=dict(in_channels=3200, channels=3200))
