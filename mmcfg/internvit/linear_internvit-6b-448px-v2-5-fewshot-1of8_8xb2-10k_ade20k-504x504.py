# Few-shot 1/8 of the training set: trained backbone (drop path 0.4, lr decay 0.95) + linear head on block 44.
# Backbone: InternViT-6B-448px-V2_5 (Hugging Face, format B).
# AdamW lr 4e-5, wd 0.05, warmup 200, poly to 0 at 10000, batch 16, crop 504; subset: seeded shuffle, first len // 8.
_base_ = '../_base_/recipes/linear_fewshot_1of8.py'
model = dict(backbone=dict(arch='6b-448px-v2.5', out_indices=(44, ),
                           init_cfg=dict(type='Pretrained', checkpoint='checkpoints/InternViT-6B-448px-V2_5')),
             decode_head=dict(in_channels=3200, channels=3200))
