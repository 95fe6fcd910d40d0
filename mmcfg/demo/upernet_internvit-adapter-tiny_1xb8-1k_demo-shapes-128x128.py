# A tiny InternViT + ViT-Adapter + UperNet trained from scratch on the generated shapes dataset
# (tools/make_demo_data.py), on CPU, in minutes: the segmentor of mmcfg/_base_/models/upernet_internvit_adapter.py
# at toy size (no checkpoint, the ViT trained too, whole-image testing, 1000 iterations). The adapter needs
# sides that are multiples of 32: the 112x112 images are resized to 128x128 for training and testing.
_base_ = [
    '../_base_/models/upernet_internvit_adapter.py', '../_base_/datasets/demo_shapes_112x112.py',
    '../_base_/default_runtime.py', '../_base_/schedules/schedule_80k_adamw.py'
]
tiny_arch = dict(embed_dims=96, num_layers=4, num_heads=4, feedforward_channels=384, norm_type='rms_norm',
                 qk_normalization=True, qkv_bias=False, patch_size=16, img_size=128)
crop_size = (128, 128)
data_preprocessor = dict(size=crop_size, test_cfg=dict(size_divisor=32))
model = dict(
    data_preprocessor=data_preprocessor,
    # the recipe's adapter (deform / cffn ratio 0.25, init_values 0) on 4 blocks, one per interaction
    backbone=dict(_delete_=True, type='InternViTAdapter', arch=tiny_arch,
                  interaction_indexes=[[0, 0], [1, 1], [2, 2], [3, 3]], deform_num_heads=4, deform_ratio=0.25,
                  cffn_ratio=0.25, init_values=0.0, freeze_vit=False, drop_path_rate=0.0),
    decode_head=dict(in_channels=[96, 96, 96, 96], channels=64, num_classes=6),
    auxiliary_head=dict(in_channels=96, channels=32, num_classes=6),
    test_cfg=dict(_delete_=True, mode='whole'))
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='CheckSegMap', num_classes=6),
    dict(type='RandomResize', scale=crop_size, ratio_range=(0.8, 1.5), keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=0.9),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackSegInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='ResizeShortSide', short_side=128, size_divisor=32),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='CheckSegMap', num_classes=6),
    dict(type='PackSegInputs'),
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader
# bf16 autocast as the schedule (BF16OptimWrapper on CPU, AmpOptimWrapper on GPU; tools/train.py --fp32 turns it
# off); AdamW lr 1e-3 with layer decay 0.9 and gradient clipping at 1.0, as the plain-ViT demo
optim_wrapper = dict(
    optimizer=dict(lr=1e-3),
    constructor='InternViTLayerDecayOptimWrapperConstructor',
    paramwise_cfg=dict(layer_decay_rate=0.9),
    clip_grad=dict(_delete_=True, max_norm=1.0))
auto_scale_lr = dict(base_batch_size=8)  # lr 1e-3 is for batch 8 (--auto-scale-lr)
max_iters = 1000
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=False, begin=0, end=100),
    dict(type='PolyLR', power=1.0, eta_min=0.0, by_epoch=False, begin=100, end=max_iters),
]
train_cfg = dict(max_iters=max_iters, val_interval=500)
default_hooks = dict(checkpoint=dict(interval=500, max_keep_ckpts=1))
randomness = dict(seed=0)
