# InternViT-6B + 4-level pyramid + UperNet (InternVL's head-tuning / full-tuning segmentor).
norm_cfg = dict(type='SyncBN', requires_grad=True)
data_preprocessor = dict(
    type='SegDataPreProcessor',
    mean=[123.675, 116.28, 103.53],
    std=[58.395, 57.12, 57.375],
    bgr_to_rgb=True,
    pad_val=0,
    seg_pad_val=255,
    size=(504, 504))
model = dict(
    type='EncoderDecoder',
    data_preprocessor=data_preprocessor,
    backbone=dict(
        type='InternViT',
        arch='6b',
        out_indices=(11, 23, 35, 47),
        attn_backend='auto',
        drop_path_rate=0.0,
        with_cp=True,
        frozen=False,
        init_cfg=dict(type='Pretrained', checkpoint='checkpoints/intern_vit_6b_224px.pth')),
    neck=dict(type='InternViTPyramid', in_channels=3200, num_levels_in=4),
    decode_head=dict(
        type='UPerHead',
        in_channels=[3200, 3200, 3200, 3200],
        in_index=[0, 1, 2, 3],
        pool_scales=(1, 2, 3, 6),
        channels=1536,
        dropout_ratio=0.1,
        num_classes=150,
        norm_cfg=norm_cfg,
        align_corners=False,
        loss_decode=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0)),
    auxiliary_head=dict(
        type='FCNHead',
        in_channels=3200,
        in_index=2,
        channels=256,
        num_convs=1,
        concat_input=False,
        dropout_ratio=0.1,
        num_classes=150,
        norm_cfg=norm_cfg,
        align_corners=False,
        loss_decode=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=0.4)),
    train_cfg=dict(),
    test_cfg=dict(mode='slide', crop_size=(504, 504), stride=(322, 322)))
