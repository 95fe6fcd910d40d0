# Frozen ViT + ViT-Adapter + UperNet (channels 1536), aux FCN (channels 1536) on the stride-16 map: InternVL-MMDetSeg's
# upernet_intern_vit_adapter_6b_512_80k_ade20k_bs16_lr4e-5.py, 58.1 mIoU published (the frozen 6B with a plain pyramid
# + UperNet: 54.9). Backbone: InternViT-6B-224px (Hugging Face, format B) at patch 16 (the 14-px kernel resampled
# at load, announced) with a 32x32 position grid (img_size 512, resampled from 16x16 at load), interactions
# [[0, 11], [12, 23], [24, 35], [36, 47]], deform / cffn ratio 0.25, init_values 0, activation checkpointing.
# AdamW lr 4e-5, wd 0.05, layer decay 0.95, warmup 1500, poly to 0 at 80k, batch 16 (8 GPUs x 2), crop 512,
# slide 512/341.
_base_ = '../_base_/recipes/upernet_adapter_frozen.py'
model = dict(backbone=dict(arch='6b', patch_size=16, img_size=512,
                           interaction_indexes=[[0, 11], [12, 23], [24, 35], [36, 47]],
                           init_cfg=dict(type='Pretrained', checkpoint='checkpoints/InternViT-6B-224px')),
             decode_head=dict(in_channels=[3200] * 4, channels=1536),
             auxiliary_head=dict(in_channels=3200, channels=1536))
