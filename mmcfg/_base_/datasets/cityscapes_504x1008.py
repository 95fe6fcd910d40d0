# Cityscapes (19 classes): leftImg8bit/<split>/<city>/*_leftImg8bit.png with
# gtFine/<split>/<city>/*_gtFine_labelTrainIds.png (mmseg's tools/dataset_converters/cityscapes.py).
# mmseg's 512x1024 crop rounded down to multiples of 14 (504x1008); tested on the full image (1024x2048,
# as 1022x2044) with slide windows 504x1008, stride 336x672.
dataset_type = 'PerceptionCityscapesDataset'
data_root = 'data/cityscapes'
crop_size = (504, 1008)
num_classes = 19
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations'),
    dict(type='CheckSegMap', num_classes=num_classes),
    dict(type='RandomResize', scale=(2048, 1024), ratio_range=(0.5, 2.0), keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PhotoMetricDistortion'),
    dict(type='PackSegInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    # mmseg's keep-ratio Resize to 2048x1024, both sides rounded to multiples of 14 (1022x2044)
    dict(type='ResizeShortSide', short_side=1024, max_long_side=2048, size_divisor=14),
    dict(type='LoadAnnotations'),
    dict(type='CheckSegMap', num_classes=num_classes),
    dict(type='PackSegInputs'),
]
train_dataloader = dict(
    batch_size=2, num_workers=4, persistent_workers=True, sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset=dict(type=dataset_type, data_root=data_root,
                 data_prefix=dict(img_path='leftImg8bit/train', seg_map_path='gtFine/train'),
                 pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=1, num_workers=4, persistent_workers=True, sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(type=dataset_type, data_root=data_root,
                 data_prefix=dict(img_path='leftImg8bit/val', seg_map_path='gtFine/val'),
                 pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(type='IoUMetric', iou_metrics=['mIoU'])
test_evaluator = val_evaluator
