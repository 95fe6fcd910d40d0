# Your own data (docs/custom_dataset.md), worked example: a folder of images and masks made by
# `python tools/make_demo_data.py --out data/my_shapes`, a linear probe (BN + 1x1 conv) on the frozen
# InternViT-300M. Everything else (backbone, head, AdamW, warmup + poly) comes from the shipped config;
# for head tuning with UperNet, inherit upernet_internvit-300m-frozen_... and set auxiliary_head too.
_base_ = ['../internvit/linear_internvit-300m-frozen_8xb2-80k_ade20k-504x504.py']

# 1. the data: images/<split>/NAME.jpg with annotations/<split>/NAME.png (one channel, the label per pixel)
data_root = 'data/my_shapes'
# 2. the classes and their colours; the masks use 0 for "background / unlabelled" and 1..6 for these
#    classes, so reduce_zero_label=True maps 0 to the ignore index 255 and 1..6 to 0..5
classes = ('disc', 'square', 'triangle', 'ring', 'cross', 'hexagon')
palette = [[220, 60, 60], [60, 160, 220], [240, 200, 40], [150, 80, 200], [60, 200, 90], [240, 130, 40]]
num_classes = len(classes)
crop_size = (224, 224)  # a multiple of the patch size 14

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations'),
    dict(type='CheckSegMap', num_classes=num_classes),  # a label outside the classes names its file
    dict(type='RandomResize', scale=(448, 224), ratio_range=(0.5, 2.0), keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PhotoMetricDistortion'),
    dict(type='PackSegInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='ResizeShortSide', short_side=224, size_divisor=14),
    dict(type='LoadAnnotations'),
    dict(type='CheckSegMap', num_classes=num_classes),
    dict(type='PackSegInputs'),
]
dataset = dict(type='PerceptionSegDataset', data_root=data_root, metainfo=dict(classes=classes, palette=palette),
               img_suffix='.jpg', seg_map_suffix='.png', reduce_zero_label=True)
train_dataloader = dict(batch_size=8, num_workers=2, dataset=dict(
    dataset, data_prefix=dict(img_path='images/training', seg_map_path='annotations/training'),
    pipeline=train_pipeline))
val_dataloader = dict(batch_size=1, num_workers=2, dataset=dict(
    dataset, data_prefix=dict(img_path='images/validation', seg_map_path='annotations/validation'),
    pipeline=test_pipeline))
test_dataloader = val_dataloader

# 3. the model: the heads predict num_classes; windows of the crop size at test time
model = dict(data_preprocessor=dict(size=crop_size),
             decode_head=dict(num_classes=num_classes),
             test_cfg=dict(mode='slide', crop_size=crop_size, stride=(154, 154)))

# 4. the schedule: 2k iterations (warmup 200), a validation and a checkpoint every 500
train_cfg = dict(max_iters=2000, val_interval=500)
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6, by_epoch=False, begin=0, end=200),
    dict(type='PolyLR', power=1.0, eta_min=0.0, by_epoch=False, begin=200, end=2000),
]
default_hooks = dict(checkpoint=dict(interval=500))
auto_scale_lr = dict(base_batch_size=8)
