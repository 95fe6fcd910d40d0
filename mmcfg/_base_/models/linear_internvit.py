# InternViT-6B + InternVL's linear probe (BatchNorm + 1x1 conv on one layer).
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
        out_indices=(44, ),
        attn_backend='auto',
        drop_path_rate=0.0,
        with_cp=True,
        frozen=True,
        init_cfg=dict(type='Pretrained', checkpoint='checkpoints/intern_vit_6b_224px.pth')),
    decode_head=dict(
        type='LinearProbeHead',
        in_channels=3200,
        channels=3200,
        in_index=0,
        dropout_ratio=0.0,
        num_classes=150,
        norm_cfg=norm_cfg,
        align_corners=False,
        loss_decode=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0)),
    train_cfg=dict(),
    test_cfg=dict(mode='slide', crop_size=(504, 504), stride=(322, 322)))
