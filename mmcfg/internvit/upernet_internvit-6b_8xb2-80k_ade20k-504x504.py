# Full tuning: trained backbone (drop path 0.4, layer-wise lr decay 0.95) + pyramid + UperNet on blocks [11, 23, 35, 47].
# Backbone: InternViT-6B-224px (InternVL release, format A).
# AdamW lr 4e-5, wd 0.05, warmup 1500, poly to 0 at 80k, batch 16, crop 504, slide 504/322; pos_embed trained at 36x36.
_base_ = '../_base_/recipes/upernet_full.py'
model = dict(backbone=dict(arch='6b', out_indices=(11, 23, 35, 47),
                           init_cfg=dict(type='Pretrained', checkpoint='checkpoints/intern_vit_6b_224px.pth')),
             neck=dict(in_channels=3200), decode_head=dict(in_channels=[3200] * 4, channels=1536),
             auxiliary_head=dict(in_channels=3200))
