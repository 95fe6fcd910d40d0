# Full tuning: trained backbone (drop path 0.4, layer-wise lr decay 0.95) + pyramid + UperNet on blocks [11, 22, 33, 44].
# Backbone: InternViT-6B-448px-V1-5 (Hugging Face, format B).
# AdamW lr 4e-5, wd 0.05, warmup 1500, poly to 0 at 80k, batch 16, crop 504, slide 504/322; pos_embed trained at 36x36.
_base_ = [
    '../_base_/models/upernet_internvit.py', '../_base_/datasets/ade20k_504x504.py',
    '../_base_/default_runtime.py', '../_base_/schedules/schedule_80k_adamw.py'
]
model = dict(
    backbone=dict(
        arch='6b-448px-v1.5',
        img_size=504,
        out_indices=(11, 22, 33, 44),
        frozen=False,
        drop_path_rate=0.4,
        with_cp=True,
        init_cfg=dict(type='Pretrained', checkpoint='checkpoints/InternViT-6B-448px-V1-5')),
    neck=dict(in_channels=3200),
    decode_head=dict(in_channels=[3200] * 4, channels=1536),
    auxiliary_head=dict(in_channels=3200, in_index=2))
optim_wrapper = dict(
    optimizer=dict(weight_decay=0.05),
    constructor='InternViTLayerDecayOptimWrapperConstructor',
    paramwise_cfg=dict(layer_decay_rate=0.95))
