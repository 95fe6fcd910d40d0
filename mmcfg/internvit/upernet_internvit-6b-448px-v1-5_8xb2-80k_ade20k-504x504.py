# Full tuning: trained backbone (drop path 0.4, layer-wise lr decay 0.95) + pyramid + UperNet on blocks [11, 22, 33, 44].
# Backbone: InternViT-6B-448px-V1-5 (Hugging Face, format B).
# AdamW lr 4e-5, wd 0.05, warmup 1500, poly to 0 at 80k, batch 16, crop 504, slide 504/322; pos_embed trained at 36x36.
_base_ = '../_base_/recipes/upernet_full.py'
model = dict(backbone=dict(arch='6b-448px-v1.5', out_indices=(11, 22, 33, 44),
                           init_cfg=dict(type='Pretrained', checkpoint='checkpoints/InternViT-6B-448px-V1-5')),
             neck=dict(in_channels=3200), decode_head=dict(in_channels=[3200] * 4, channels=1536),
             auxiliary_head=dict(in_channels=3200))
