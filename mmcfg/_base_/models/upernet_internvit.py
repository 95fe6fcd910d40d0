# InternViT-6B + 4-level pyramid + UperNet (InternVL's head-tuning / full-tuning segmentor).
_base_ = './encoder_decoder_internvit.py'
model = dict(
    backbone=dict(out_indices=(11, 23, 35, 47), frozen=False),
    neck=dict(type='InternViTPyramid', in_channels=3200, num_levels_in=4),
    decode_head=dict(
        type='UPerHead', in_channels=[3200, 3200, 3200, 3200], in_index=[0, 1, 2, 3],
        pool_scales=(1, 2, 3, 6), channels=1536, dropout_ratio=0.1, num_classes=150,
        norm_cfg={{_base_.norm_cfg}}, align_corners=False,
        loss_decode=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0)),
    auxiliary_head=dict(
        type='FCNHead', in_channels=3200, in_index=2, channels=256, num_convs=1, concat_input=False,
        dropout_ratio=0.1, num_classes=150, norm_cfg={{_base_.norm_cfg}}, align_corners=False,
        loss_decode=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=0.4)))
