# Few-shot 1/8 of the training set: trained backbone (drop path 0.4, lr decay 0.95) + linear head on block 23.
# Backbone: InternViT-300M-448px (Hugging Face, format B); no published numbers: a first baseline.
# AdamW lr 4e-5, wd 0.05, warmup 200, poly to 0 at 10000, batch 16, crop 504; subset: seeded shuffle, first len // 8.
_base_ = '../_base_/recipes/linear_fewshot_1of8.py'
model = dict(backbone=dict(arch='300m', out_indices=(23, ),
                           init_cfg=dict(type='Pretrained', checkpoint='checkpoints/InternViT-300M-448px')),
             decode_head=dict(in_channels=1024, channels=1024))
