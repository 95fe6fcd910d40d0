# Frozen InternViT + ViT-Adapter + Mask2Former: the ViT frozen (no gradient, eval mode; InternVL-MMDetSeg's
# setting), the adapter and the head trained with mmseg's Mask2Former ADE20K schedule
# (mask2former_adapter_schedule.py). The adapter is new (randomly initialised), not a pretrained backbone:
# it trains at the full lr (the 0.1 backbone lr_mult of mmseg's recipe is for pretrained weights, and the
# pretrained ViT here gets no gradient at all); its norms without weight decay (norm_decay_mult 0).
_base_ = './mask2former_adapter_schedule.py'
model = dict(backbone=dict(freeze_vit=True, with_cp=True))
