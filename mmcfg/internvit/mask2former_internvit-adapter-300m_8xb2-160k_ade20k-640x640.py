# Full tuning: InternViT-300M-448px (Hugging Face, format B; patch 16: the 14-px kernel resampled at load,
# announced) + ViT-Adapter + Mask2Former on ADE20K at 640x640. Adapter as ViT-Adapter-L and the adapter + UperNet
# 300M config: interactions [[0, 5], [6, 11], [12, 17], [18, 23]], 16 deformable heads, deform ratio 0.5, cffn
# ratio 0.25. The ViT at lr_mult 0.1 (mmseg's backbone multiplier), adapter and head at AdamW 1e-4; mmseg's
# Swin-L Mask2Former ADE20K crop, pipeline and 160k schedule (see the recipe). No published numbers.
_base_ = '../_base_/recipes/mask2former_adapter_full.py'
model = dict(
    backbone=dict(arch='300m', patch_size=16, img_size=512, interaction_indexes=[[0, 5], [6, 11], [12, 17], [18, 23]],
                  deform_num_heads=16, deform_ratio=0.5, cffn_ratio=0.25,
                  init_cfg=dict(type='Pretrained', checkpoint='checkpoints/InternViT-300M-448px')),
    decode_head=dict(in_channels=[1024] * 4))
# the ViT's norms: lr_mult 0.1 and no weight decay (each block's norm1 / norm2)
optim_wrapper = dict(paramwise_cfg=dict(custom_keys={
    f'backbone.blocks.{i}.norm': {{_base_.pretrained_vit_no_decay}} for i in range(24)}))
