# Frozen ViT + ViT-Adapter + UperNet (channels 1536), aux FCN (channels 1536) on the stride-16 map: the recipe of
# ./upernet_internvit-adapter-6b-frozen_8xb2-80k_ade20k-512x512.py on InternViT-6B-448px-V2_5 (Hugging Face, format B;
# no published numbers). 45 blocks: interactions [[0, 11], [12, 22], [23, 33], [34, 44]] (each ends at a block the
# plain UperNet configs of this release tap); patch 16 (the 14-px kernel resampled at load, announced), the 32x32
# position grid of the release kept (img_size 512). deform / cffn ratio 0.25, init_values 0.
# AdamW lr 4e-5, wd 0.05, layer decay 0.95, warmup 1500, poly to 0 at 80k, batch 16, crop 512, slide 512/341.
_base_ = '../_base_/recipes/upernet_adapter_frozen.py'
model = dict(backbone=dict(arch='6b-448px-v2.5', patch_size=16, img_size=512,
                           interaction_indexes=[[0, 11], [12, 22], [23, 33], [34, 44]],
                           init_cfg=dict(type='Pretrained', checkpoint='checkpoints/InternViT-6B-448px-V2_5')),
             decode_head=dict(in_channels=[3200] * 4, channels=1536),
             auxiliary_head=dict(in_channels=3200, channels=1536))
