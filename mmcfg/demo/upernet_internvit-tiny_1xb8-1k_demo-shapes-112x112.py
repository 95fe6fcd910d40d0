# make demo: a tiny InternViT (6B layout) + pyramid + UperNet trained from scratch on the generated
# shapes dataset (tools/make_demo_data.py), on CPU, in minutes: the 6B segmentor and schedule of
# mmcfg/_base_/ at toy size (no checkpoint, whole-image testing, 1000 iterations: schedule_demo_1k.py).
_base_ = [
    '../_base_/models/upernet_internvit.py', '../_base_/datasets/demo_shapes_112x112.py',
    '../_base_/default_runtime.py', '../_base_/schedules/schedule_demo_1k.py'
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
