# ADE20K at 512x512 with the pipelines of InternVL-MMDetSeg's ViT-Adapter recipe (its mmseg 0.x
# configs/_base_/datasets/ade20k.py; 150 classes, reduce_zero_label=True): training as mmseg's ADE20K-512
# (random resize of (2048, 512) by 0.5-2.0, crop 512 with cat_max_ratio 0.75, flip, photometric distortion;
# padding to 512 with seg pad 255 happens in the data preprocessor); testing with the fork's SETR_Resize
# (keep_ratio, crop_size 512, setr_multi_scale): the short side becomes exactly 512 and the long side is not
# capped, i.e. ResizeShortSide(512). mmseg 1.x's Resize((2048, 512)) differs only for images whose sides
# differ by more than 4x (it caps the long side at 2048).
_base_ = './ade20k_504x504.py'
crop_size = (512, 512)
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='CheckSegMap', num_classes=150),
    dict(type='RandomResize', scale=(2048, 512), ratio_range=(0.5, 2.0), keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PhotoMetricDistortion'),
    dict(type='PackSegInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='ResizeShortSide', short_side=512),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='CheckSegMap', num_classes=150),
    dict(type='PackSegInputs'),
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader
