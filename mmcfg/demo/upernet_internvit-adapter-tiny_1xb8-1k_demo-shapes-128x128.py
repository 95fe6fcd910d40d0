# A tiny InternViT + ViT-Adapter + UperNet trained from scratch on the generated shapes dataset
# (tools/make_demo_data.py), on CPU, in minutes: the segmentor of mmcfg/_base_/models/upernet_internvit_adapter.py
# at toy size (no checkpoint, the ViT trained too, whole-image testing), with the plain-ViT demo's schedule
# (schedule_demo_1k.py). The adapter needs sides that are multiples of 32: the 112x112 images are resized to
# 128x128 for training and testing (demo_shapes_128x128.py).
_base_ = [
    '../_base_/models/upernet_internvit_adapter.py', '../_base_/datasets/demo_shapes_128x128.py',
    '../_base_/default_runtime.py', '../_base_/schedules/schedule_demo_1k.py'
]
tiny_arch = dict(embed_dims=96, num_layers=4, num_heads=4, feedforward_channels=384, norm_type='rms_norm',
                 qk_normalization=True, qkv_bias=False, patch_size=16, img_size=128)
data_preprocessor = dict(size={{_base_.crop_size}})  # the model base pads test inputs to multiples of 32
model = dict(
    data_preprocessor=data_preprocessor,
    # the recipe's adapter (deform / cffn ratio 0.25, init_values 0) on 4 blocks, one per interaction
    backbone=dict(_delete_=True, type='InternViTAdapter', arch=tiny_arch,
                  interaction_indexes=[[0, 0], [1, 1], [2, 2], [3, 3]], deform_num_heads=4, deform_ratio=0.25,
                  cffn_ratio=0.25, init_values=0.0, freeze_vit=False, drop_path_rate=0.0),
    decode_head=dict(in_channels=[96, 96, 96, 96], channels=64, num_classes=6),
    auxiliary_head=dict(in_channels=96, channels=32, num_classes=6),
    test_cfg=dict(_delete_=True, mode='whole'))
