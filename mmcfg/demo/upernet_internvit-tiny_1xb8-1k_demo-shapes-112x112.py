# make demo: a tiny InternViT (6B layout) + pyramid + UperNet trained from scratch on the generated
# shapes dataset (tools/make_demo_data.py), on CPU, in minutes: the 6B segmentor and schedule of
# mmcfg/_base_/ at toy size (no checkpoint, whole-image testing, 1000 iterations).
_base_ = [
    '../_base_/models/upernet_internvit.py', '../_base_/datasets/demo_shapes_112x112.py',
    '../_base_/default_runtime.py', '../_base_/schedules/schedule_80k_adamw.py'
]
tiny_arch = dict(embed_dims=128, num_layers=6, num_heads=4, feedforward_channels=512, norm_type='rms_norm',
                 qk_normalization=True, qkv_bias=False, patch_size=14, img_size=112)
data_preprocessor = dict(size=(112, 112))
model = dict(
    data_preprocessor=data_preprocessor,
    backbone=dict(_delete_=True, type='InternViT', arch=tiny_arch, out_indices=(1, 3, 4, 5), drop_path_rate=0.0),
    neck=dict(in_channels=128),
    decode_head=dict(in_channels=[128, 128, 128, 128], channels=64, num_classes=6),
    auxiliary_head=dict(in_channels=128, channels=32, num_classes=6),
    test_cfg=dict(_delete_=True, mode='whole'))
# bf16 autocast (BF16OptimWrapper on CPU, AmpOptimWrapper on GPU): 1.2x faster per iteration on an
# AVX-512-BF16 CPU and the same mIoU as fp32 (93.70 vs 93.62); fp32 on CPUs without native bf16
# (tools/demo.py says so); --fp32 turns it off
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
