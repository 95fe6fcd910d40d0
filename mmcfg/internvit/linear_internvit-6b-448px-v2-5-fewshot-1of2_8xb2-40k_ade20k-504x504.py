# Few-shot 1/2 of the training set: trained backbone (drop path 0.4, lr decay 0.95) + linear head on block 44.
# Backbone: InternViT-6B-448px-V2_5 (Hugging Face, format B).
# AdamW lr 4e-5, wd 0.05, warmup 800, poly to 0 at 40000, batch 16, crop 504; subset: seeded shuffle, first len // 2.
_base_ = [
    '../_base_/models/linear_internvit.py', '../_base_/datasets/ade20k_504x504.py',
    '../_base_/default_runtime.py', '../_base_/schedules/schedule_80k_adamw.py'
]
model = dict(
    backbone=dict(
        arch='6b-448px-v2.5',
        img_size=504,
        out_indices=(44, ),
        frozen=False,
        drop_path_rate=0.4,
        with_cp=True,
        init_cfg=dict(type='Pretrained', checkpoint='checkpoints/InternViT-6B-448px-V2_5')),
    decode_head=dict(in_channels=3200, channels=3200))
train_dataloader = dict(dataset=dict(few_shot_divisor=2, few_shot_seed=0))
# the 1/2..1/16 runs test with a plain keep-ratio resize capped at 2016 (the 1/1 run forces short side 504)
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(2016, 504), keep_ratio=True),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='CheckSegMap', num_classes=150),
    dict(type='PackSegInputs'),
]
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader
custom_hooks = [dict(type='LearningCurveHook'), dict(type='FewShotSubsetHook')]
optim_wrapper = dict(optimizer=dict(type='AdamW', lr=4e-5, betas=(0.9, 0.999), weight_decay=0.05),
    constructor='InternViTLayerDecayOptimWrapperConstructor',
    paramwise_cfg=dict(layer_decay_rate=0.95))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6, by_epoch=False, begin=0, end=800),
    dict(type='PolyLR', power=1.0, eta_min=0.0, by_epoch=False, begin=800, end=40000),
]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=40000, val_interval=8000)
default_hooks = dict(checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=8000, max_keep_ckpts=2))
