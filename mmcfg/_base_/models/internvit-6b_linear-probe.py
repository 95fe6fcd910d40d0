# Frozen InternViT-6B in mmpretrain's ImageClassifier with InternVL's cls_patch_concat probe:
# concat(cls token, mean patch token) of the last block -> BatchNorm(6400, eps 1e-6) -> Linear(6400, 1000).
# Mixup 0.8 / CutMix 1.0 with label smoothing 0.1 (soft-target cross-entropy), as the run executed.
model = dict(
    type='ImageClassifier',
    backbone=dict(
        type='InternViT',
        arch='6b',
        out_indices=(-1, ),
        output_cls_token=True,
        frozen=True,
        attn_backend='auto',
        init_cfg=dict(type='Pretrained', checkpoint='checkpoints/intern_vit_6b_224px.pth')),
    neck=dict(type='ClsPatchConcat'),
    head=dict(
        type='BNLinearClsHead',
        num_classes=1000,
        in_channels=6400,
        bn_eps=1e-6,
        loss=dict(type='LabelSmoothLoss', label_smooth_val=0.1, mode='original', loss_weight=1.0),
        topk=(1, 5)),
    train_cfg=dict(augments=[dict(type='Mixup', alpha=0.8), dict(type='CutMix', alpha=1.0)]))
