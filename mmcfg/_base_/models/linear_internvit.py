# InternViT-6B + InternVL's linear probe (BatchNorm + 1x1 conv on one layer).
_base_ = './encoder_decoder_internvit.py'
model = dict(
    backbone=dict(out_indices=(44, ), frozen=True),
    decode_head=dict(
        type='LinearProbeHead', in_channels=3200, channels=3200, in_index=0, dropout_ratio=0.0,
        num_classes=150, norm_cfg={{_base_.norm_cfg}}, align_corners=False,
        loss_decode=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0)))
