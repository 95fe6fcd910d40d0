# Few-shot 1/1 of the training set: trained backbone (drop path 0.4, lr decay 0.95) + linear head on block 23.
# Backbone: InternViT-300M-448px (Hugging Face, format B); no published numbers: a first baseline.
# AdamW lr 4e-5, wd 0.05, warmup 1500, poly to 0 at 80000, batch 16, crop 504; subset: seeded shuffle, first len // 1.
_base_ = [
    '../_base_/models/linear_internvit.py', '../_base_/datasets/ade20k_504x504.py',
    '../_base_/default_runtime.py', '../_base_/schedules/schedule_80k_adamw.py'
]
model = dict(
    backbone=dict(
        arch='300m',
        img_size=504,
        out_indices=(23, ),
        frozen=False,
        drop_path_rate=0.4,
        with_cp=True,
        init_cfg=dict(type='Pretrained', checkpoint='checkpoints/InternViT-300M-448px')),
    decode_head=dict(in_channels=1024, channels=1024))
train_dataloader = dict(dataset=dict(few_shot_divisor=None, few_shot_seed=0))
custom_hooks = [dict(type='LearningCurveHook'), dict(type='FewShotSubsetHook')]
optim_wrapper = dict(optimizer=dict(type='AdamW', lr=4e-5, betas=(0.9, 0.999), weight_decay=0.05),
    constructor='InternViTLayerDecayOptimWrapperConstructor',
    paramwise_cfg=dict(layer_decay_rate=0.95))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6, by_epoch=False, begin=0, end=1500),
    dict(type='PolyLR', power=1.0, eta_min=0.0, by_epoch=False, begin=1500, end=80000),
]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=80000, val_interval=8000)
default_hooks = dict(checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=8000, max_keep_ckpts=2))
