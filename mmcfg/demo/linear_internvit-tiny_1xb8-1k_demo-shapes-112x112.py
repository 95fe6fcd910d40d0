# A tiny InternViT + InternVL's linear probe (BN + 1x1 conv) on the generated shapes dataset: the
# linear-probe code path end to end on CPU (trained backbone here, since nothing is pretrained).
_base_ = ['./upernet_internvit-tiny_1xb8-1k_demo-shapes-112x112.py']
model = dict(
    backbone=dict(out_indices=(5, )),
    neck=None,
    decode_head=dict(_delete_=True, type='LinearProbeHead', in_channels=128, channels=128, in_index=0,
                     dropout_ratio=0.0, num_classes=6, norm_cfg=dict(type='SyncBN', requires_grad=True),
                     align_corners=False,
                     loss_decode=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0)),
    auxiliary_head=None)
