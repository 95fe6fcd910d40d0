# Full tuning with ViT-Adapter + Mask2Former (as ViT-Adapter trains ViT-L): the pretrained ViT (patch embedding,
# position embedding, blocks) at mmseg's backbone lr_mult 0.1, the new adapter (spatial prior module,
# interactions, level embedding, up-sampling, norms) and the head at the full lr; drop path 0.4 as the project's
# full-tuning recipes; mmseg's Mask2Former ADE20K schedule otherwise (mask2former_adapter_schedule.py).
# The leaf config lists the ViT's norms (lr_mult 0.1, no decay: a custom key's decay_mult wins over
# norm_decay_mult), as mmseg's Swin configs list theirs: the recipe does not know the depth.
_base_ = './mask2former_adapter_schedule.py'
pretrained_vit = dict(lr_mult=0.1, decay_mult=1.0)
pretrained_vit_no_decay = dict(lr_mult=0.1, decay_mult=0.0)
model = dict(backbone=dict(freeze_vit=False, drop_path_rate=0.4, with_cp=True))
optim_wrapper = dict(paramwise_cfg=dict(custom_keys={
    'backbone.blocks': pretrained_vit,
    'backbone.patch_embed': pretrained_vit,
    'backbone.pos_embed': pretrained_vit_no_decay,
}))
