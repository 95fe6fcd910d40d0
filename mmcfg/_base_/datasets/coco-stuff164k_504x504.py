# COCO-Stuff-164k (171 classes), mmseg's converted layout: images/{train,val}2017/*.jpg and
# annotations/{train,val}2017/*_labelTrainIds.png (0..170, 255 unlabelled; mmseg's
# tools/dataset_converters/coco_stuff164k.py makes them). The ADE20K pipelines at crop 504.
dataset_type = 'PerceptionCOCOStuffDataset'
data_root = 'data/coco_stuff164k'
crop_size = (504, 504)
num_classes = 171
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations'),
    dict(type='CheckSegMap', num_classes=num_classes),
    dict(type='RandomResize', scale=(2016, 504), ratio_range=(0.5, 2.0), keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PhotoMetricDistortion'),
    dict(type='PackSegInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='ResizeShortSide', short_side=504, size_divisor=14),
    dict(type='LoadAnnotations'),
    dict(type='CheckSegMap', num_classes=num_classes),
    dict(type='PackSegInputs'),
]
train_dataloader = dict(
    batch_size=2, num_workers=4, persistent_workers=True, sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset=dict(type=dataset_type, data_root=data_root,
                 data_prefix=dict(img_path='images/train2017', seg_map_path='annotations/train2017'),
                 pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=1, num_workers=4, persistent_workers=True, sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(type=dataset_type, data_root=data_root,
                 data_prefix=dict(img_path='images/val2017', seg_map_path='annotations/val2017'),
                 pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(type='IoUMetric', iou_metrics=['mIoU'])
test_evaluator = val_evaluator
