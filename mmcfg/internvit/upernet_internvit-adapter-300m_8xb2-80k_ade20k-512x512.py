# Full tuning with ViT-Adapter (as ViT-Adapter trains ViT-L): the ViT trained (drop path 0.4, layer-wise lr decay 0.95)
# + adapter + UperNet (channels 1024), aux FCN on the stride-16 map. Backbone: InternViT-300M-448px (Hugging Face,
# format B) at patch 16 (the 14-px kernel resampled at load, announced), its 32x32 position grid (img_size 512);
# ViT-Adapter-L's adapter: interactions [[0, 5], [6, 11], [12, 17], [18, 23]], 16 deformable heads, deform ratio 0.5,
# cffn ratio 0.25. No published numbers: a first baseline.
# AdamW lr 4e-5, wd 0.05, warmup 1500, poly to 0 at 80k, batch 16, crop 512, slide 512/341.
_base_ = '../_base_/recipes/upernet_adapter_full.py'
model = dict(backbone=dict(arch='300m', patch_size=16, img_size=512,
                           interaction_indexes=[[0, 5], [6, 11], [12, 17], [18, 23]],
                           deform_num_heads=16, deform_ratio=0.5, cffn_ratio=0.25,
                           init_cfg=dict(type='Pretrained', checkpoint='checkpoints/InternViT-300M-448px')),
             decode_head=dict(in_channels=[1024] * 4, channels=1024),
             auxiliary_head=dict(in_channels=1024, channels=256))
