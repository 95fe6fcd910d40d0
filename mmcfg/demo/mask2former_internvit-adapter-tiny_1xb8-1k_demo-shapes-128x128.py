# A tiny InternViT + ViT-Adapter + Mask2Former trained from scratch on the generated shapes dataset
# (tools/make_demo_data.py) on CPU: the segmentor of mmcfg/_base_/models/mask2former_internvit_adapter.py
# at toy size. The adapter needs sides that are multiples of 32: the 112x112 images are resized to 128
# (demo_shapes_128x128.py).
# python tools/demo.py --config THIS_FILE --work-dir work_dirs/m2f_demo
_base_ = [
    '../_base_/models/mask2former_internvit_adapter.py', '../_base_/datasets/demo_shapes_128x128.py',
    '../_base_/default_runtime.py', '../_base_/schedules/schedule_demo_1k.py'
]
# perception's subpackages first (perception.models applies the transformers compatibility patch that
# mmdet needs), then mmdet's models (the pixel decoder, assigner and losses the head names)
custom_imports = dict(imports=['perception.models', 'perception.datasets', 'perception.engine', 'mmdet.models'],
                      allow_failed_imports=False)
num_classes = 6
tiny_arch = dict(embed_dims=96, num_layers=4, num_heads=4, feedforward_channels=384, norm_type='rms_norm',
                 qk_normalization=True, qkv_bias=False, patch_size=16, img_size=128)
data_preprocessor = dict(size={{_base_.crop_size}})
model = dict(
    data_preprocessor=data_preprocessor,
    # conv_inplane 16 (the fork's 64): the spatial prior module's stem was half of the step's time at this size
    backbone=dict(_delete_=True, type='InternViTAdapter', arch=tiny_arch,
                  interaction_indexes=[[0, 0], [1, 1], [2, 2], [3, 3]], conv_inplane=16, deform_num_heads=4,
                  deform_ratio=0.5, freeze_vit=False, with_cp=False),
    decode_head=dict(
        in_channels=[96, 96, 96, 96], feat_channels=64, out_channels=64, num_classes=num_classes, num_queries=20,
        pixel_decoder=dict(
            norm_cfg=dict(type='GN', num_groups=8),
            encoder=dict(num_layers=2, layer_cfg=dict(self_attn_cfg=dict(embed_dims=64, num_heads=4),
                                                      ffn_cfg=dict(embed_dims=64, feedforward_channels=128))),
            positional_encoding=dict(num_feats=32)),
        positional_encoding=dict(num_feats=32),
        transformer_decoder=dict(
            num_layers=3,
            layer_cfg=dict(self_attn_cfg=dict(embed_dims=64, num_heads=4),
                           cross_attn_cfg=dict(embed_dims=64, num_heads=4),
                           ffn_cfg=dict(embed_dims=64, feedforward_channels=128))),
        loss_cls=dict(class_weight=[1.0] * num_classes + [0.1]),
        train_cfg=dict(num_points=1024)))
# the demos' 1000 iterations (schedule_demo_1k.py) with Mask2Former's optimizer: fp32, AdamW lr 1e-3, the queries
# and level embeddings and the norms without weight decay, gradient clipping at 1.0; poly power 0.9 as mmseg's
# Mask2Former; validation every 250 iterations, one checkpoint at the end
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=1e-3, betas=(0.9, 0.999), weight_decay=0.05),
    clip_grad=dict(max_norm=1.0, norm_type=2),
    paramwise_cfg=dict(custom_keys={'query_embed': dict(lr_mult=1.0, decay_mult=0.0),
                                    'query_feat': dict(lr_mult=1.0, decay_mult=0.0),
                                    'level_embed': dict(lr_mult=1.0, decay_mult=0.0)},
                       norm_decay_mult=0.0))
auto_scale_lr = dict(_delete_=True, base_batch_size=8)
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=False, begin=0, end=100),
    dict(type='PolyLR', power=0.9, eta_min=0.0, by_epoch=False, begin=100, end={{_base_.max_iters}}),
]
train_cfg = dict(val_interval=250)
default_hooks = dict(checkpoint=dict(interval=1000))
