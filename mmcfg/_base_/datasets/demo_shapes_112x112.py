# The generated demo dataset (tools/make_demo_data.py): 6 shape/texture classes, ADE20K layout, 112x112;
# the ADE20K loaders of ade20k_504x504.py with their own pipelines, batch 8 and one worker.
_base_ = './ade20k_504x504.py'
dataset_type = 'DemoShapesDataset'
data_root = 'data/demo_shapes'
crop_size = (112, 112)
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='CheckSegMap', num_classes=6),
    dict(type='RandomResize', scale=(112, 112), ratio_range=(0.8, 1.5), keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=0.9),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackSegInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='ResizeShortSide', short_side=112, size_divisor=14),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='CheckSegMap', num_classes=6),
    dict(type='PackSegInputs'),
]
train_dataloader = dict(batch_size=8, num_workers=1,
                        dataset=dict(type=dataset_type, data_root=data_root, pipeline=train_pipeline))
val_dataloader = dict(num_workers=1, dataset=dict(type=dataset_type, data_root=data_root, pipeline=test_pipeline))
test_dataloader = val_dataloader
