# InternViT-6B + ViT-Adapter + UperNet: InternVL-MMDetSeg's ADE20K segmentor
# (configs/intern_vit_6b/vit_adapter/upernet_intern_vit_adapter_6b_512_80k_ade20k_bs16_lr4e-5.py).
# The adapter gives four 3200-channel maps at strides 4/8/16/32 itself (no pyramid neck); the ViT takes
# the 224px release's 14-px kernel resampled to 16 px (announced at load) and a 32x32 position grid
# (img_size 512) as the fork. ImageNet mean/std, training inputs padded to 512x512, sliding-window testing
# (crop 512, stride 341); test inputs are padded to multiples of 32 (mmseg's size_divisor; the padding rule of
# perception/segmentation/padding.py does the same in tools/infer.py and the exported runtime).
norm_cfg = dict(type='SyncBN', requires_grad=True)
data_preprocessor = dict(
    type='SegDataPreProcessor',
    mean=[123.675, 116.28, 103.53],
    std=[58.395, 57.12, 57.375],
    bgr_to_rgb=True,
    pad_val=0,
    seg_pad_val=255,
    size=(512, 512),
    test_cfg=dict(size_divisor=32))  # test inputs padded (mean colour) to multiples of 32, as the adapter needs
model = dict(
    type='EncoderDecoder',
    data_preprocessor=data_preprocessor,
    backbone=dict(
        type='InternViTAdapter',
        arch='6b',
        patch_size=16,
        img_size=512,
        interaction_indexes=[[0, 11], [12, 23], [24, 35], [36, 47]],
        conv_inplane=64,
        n_points=4,
        deform_ratio=0.25,
        with_cffn=True,
        cffn_ratio=0.25,
        init_values=0.0,
        add_vit_feature=True,
        use_extra_extractor=True,
        use_final_norm=True,
        freeze_vit=True,
        drop_path_rate=0.0,
        with_cp=True,
        attn_backend='auto',
        init_cfg=dict(type='Pretrained', checkpoint='checkpoints/InternViT-6B-224px')),
    decode_head=dict(
        type='UPerHead', in_channels=[3200, 3200, 3200, 3200], in_index=[0, 1, 2, 3],
        pool_scales=(1, 2, 3, 6), channels=1536, dropout_ratio=0.1, num_classes=150,
        norm_cfg=norm_cfg, align_corners=False,
        loss_decode=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0)),
    # the fork's auxiliary FCN: on the stride-16 map (in_index 2), 1536 channels (mmseg's default is 256)
    auxiliary_head=dict(
        type='FCNHead', in_channels=3200, in_index=2, channels=1536, num_convs=1, concat_input=False,
        dropout_ratio=0.1, num_classes=150, norm_cfg=norm_cfg, align_corners=False,
        loss_decode=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=0.4)),
    train_cfg=dict(),
    test_cfg=dict(mode='slide', crop_size=(512, 512), stride=(341, 341)))
