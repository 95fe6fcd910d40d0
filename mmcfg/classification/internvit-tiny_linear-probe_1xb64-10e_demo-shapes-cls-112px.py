# Classification demo: the cls_patch_concat probe on a frozen tiny InternViT (6B layout), on the
# generated shapes classification dataset (tools/make_demo_data.py --cls: ImageNet folder layout and a
# seeded tiny backbone checkpoint). tools/linear_probe.py sweeps many heads over cached features.
_base_ = ['../_base_/cls_runtime.py']
data_root = 'data/demo_shapes_cls'
tiny_arch = dict(embed_dims=128, num_layers=6, num_heads=4, feedforward_channels=512, norm_type='rms_norm',
                 qk_normalization=True, qkv_bias=False, patch_size=14, img_size=112)
# class folders c0_disc .. c5_hexagon: labels follow their sorted order, as ImageNet's synset folders
model = dict(
    type='ImageClassifier',
    backbone=dict(type='InternViT', arch=tiny_arch, out_indices=(-1, ), output_cls_token=True, frozen=True,
                  init_cfg=dict(type='Pretrained', checkpoint=data_root + '/tiny_backbone.safetensors')),
    neck=dict(type='ClsPatchConcat'),
    head=dict(type='BNLinearClsHead', num_classes=6, in_channels=256, bn_eps=1e-6,
              loss=dict(type='CrossEntropyLoss', loss_weight=1.0), topk=(1, 5)))
data_preprocessor = dict(num_classes=6, mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375],
                         to_rgb=True)
img_size = 112
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='RandomResizedCrop', scale=img_size, crop_ratio_range=(0.6, 1.0), backend='pillow',
         interpolation='bicubic'),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='PackInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='ResizeEdge', scale=img_size, edge='short', backend='pillow', interpolation='bicubic'),
    dict(type='CenterCrop', crop_size=img_size),
    dict(type='PackInputs'),
]
train_dataloader = dict(
    batch_size=64, num_workers=1, persistent_workers=True, sampler=dict(type='DefaultSampler', shuffle=True),
    dataset=dict(type='CheckedImageFolder', data_root=data_root, data_prefix='train',
                 pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=64, num_workers=1, persistent_workers=True, sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(type='CheckedImageFolder', data_root=data_root, data_prefix='val', ann_file='meta/val.txt',
                 pipeline=test_pipeline))
val_evaluator = dict(type='Accuracy', topk=(1, 5))
test_dataloader = val_dataloader
test_evaluator = val_evaluator
optim_wrapper = dict(type='OptimWrapper', optimizer=dict(type='SGD', lr=0.1 * 64 / 512, momentum=0.9, nesterov=True,
                                                         weight_decay=0.0), clip_grad=dict(max_norm=5.0))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=True, begin=0, end=1, convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', T_max=9, eta_min=0.0, by_epoch=True, begin=1, end=10, convert_to_iter_based=True),
]
train_cfg = dict(by_epoch=True, max_epochs=10, val_interval=5)
val_cfg = dict()
test_cfg = dict()
default_hooks = dict(logger=dict(type='LoggerHook', interval=5), checkpoint=dict(type='SafeCheckpointHook', interval=5))
custom_hooks = [dict(type='HeadEMAHook', momentum=0.002)]
# tools/linear_probe.py: the many-heads sweep over cached features
linear_probe = dict(lrs=(1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1), n_last_blocks=(1, 4), epochs=100, batch_size=64)
