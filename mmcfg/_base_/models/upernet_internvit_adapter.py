# InternViT-6B + ViT-Adapter + UperNet: InternVL-MMDetSeg's ADE20K segmentor
# (configs/intern_vit_6b/vit_adapter/upernet_intern_vit_adapter_6b_512_80k_ade20k_bs16_lr4e-5.py). The backbone
# and data preprocessor are internvit_adapter.py's (the 224px release's 14-px kernel resampled to 16 px, announced
# at load, a 32x32 position grid as the fork; training inputs padded to 512x512, test inputs to multiples of 32);
# sliding-window testing (crop 512, stride 341).
_base_ = './internvit_adapter.py'
norm_cfg = dict(type='SyncBN', requires_grad=True)
model = dict(
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
    test_cfg=dict(mode='slide', crop_size=(512, 512), stride=(341, 341)))
