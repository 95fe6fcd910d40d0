# Pascal Context-59: VOC2010/JPEGImages, SegmentationClassContext/*.png (0 = background, reduced to the
# ignore index; 1..59 -> 0..58), split lists ImageSets/SegmentationContext/{train,val}.txt. mmseg's
# 520 scale / 480 crop, the crop rounded down to a multiple of 14 (476); slide 476 / 308.
dataset_type = 'PerceptionPascalContextDataset59'
data_root = 'data/VOCdevkit/VOC2010'
crop_size = (476, 476)
num_classes = 59
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='CheckSegMap', num_classes=num_classes),
    dict(type='RandomResize', scale=(520, 520), ratio_range=(0.5, 2.0), keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PhotoMetricDistortion'),
    dict(type='PackSegInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    # mmseg's keep-ratio Resize to 520, as 518 and with both sides rounded to multiples of 14
    dict(type='ResizeShortSide', short_side=518, max_long_side=518, size_divisor=14),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='CheckSegMap', num_classes=num_classes),
    dict(type='PackSegInputs'),
]
train_dataloader = dict(
    batch_size=2, num_workers=4, persistent_workers=True, sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset=dict(type=dataset_type, data_root=data_root,
                 data_prefix=dict(img_path='JPEGImages', seg_map_path='SegmentationClassContext'),
                 ann_file='ImageSets/SegmentationContext/train.txt', pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=1, num_workers=4, persistent_workers=True, sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(type=dataset_type, data_root=data_root,
                 data_prefix=dict(img_path='JPEGImages', seg_map_path='SegmentationClassContext'),
                 ann_file='ImageSets/SegmentationContext/val.txt', pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(type='IoUMetric', iou_metrics=['mIoU'])
test_evaluator = val_evaluator
