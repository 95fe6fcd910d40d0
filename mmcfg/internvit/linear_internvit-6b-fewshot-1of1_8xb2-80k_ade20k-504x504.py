# Few-shot 1/1 of the training set: trained backbone (drop path 0.4, lr decay 0.95) + linear head on block 47.
# Backbone: InternViT-6B-224px (InternVL release, format A).
# AdamW lr 4e-5, wd 0.05, warmup 1500, poly to 0 at 80000, batch 16, crop 504; subset: seeded shuffle, first len // 1.
_base_ = '../_base_/recipes/linear_fewshot_1of1.py'
model = dict(backbone=dict(arch='6b', out_indices=(47, ),
                           init_cfg=dict(type='Pretrained', checkpoint='checkpoints/intern_vit_6b_224px.pth')),
             decode_head=dict(in_channels=3200, channels=3200))
