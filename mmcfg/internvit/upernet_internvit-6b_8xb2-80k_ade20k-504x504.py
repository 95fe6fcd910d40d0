# Full tuning: trained backbone (drop path 0.4, layer-wise lr decay 0.95) + pyramid + UperNet on blocks [11, 23, 35, 47].
# Backbone: InternViT-6B-224px (InternVL release, format A).
# AdamW lr 4e-5, wd 0.05, warmup 1500, poly to 0 at 80k, batch 16, crop 504, slide 504/322; pos_embed trained at 36x36.
_base_ = [
    '../_base_/models/upernet_internvit.py', '../_base_/datasets/ade20k_504x504.py',
    '../_base_/default_runtime.py', '../_base_/schedules/schedule_80k_adamw.py'
]
model = dict(
    backbone=dict(
        arch='6b',
        img_size=504,
        out_indices=(11, 23, 35, 47),
        frozen=False,
        drop_path_rate=0.4,
        with_cp=True,
        init_cfg=dict(type='Pretrained', checkpoint='checkpoints/intern_vit_6b_224px.pth')),
    neck=dict(in_channels=3200),
    decode_head=dict(in_channels=[3200] * 4, channels=1536),
    auxiliary_head=dict(in_channels=3200, in_index=2))
optim_wrapper = dict(
    optimizer=dict(weight_decay=0.05),
    constructor='InternViTLayerDecayOptimWrapperConstructor',
    paramwise_cfg=dict(layer_decay_rate=0.95))
