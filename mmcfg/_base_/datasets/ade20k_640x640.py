# ADE20K at 640x640 with the pipelines of mmseg's Mask2Former ADE20K configs for large backbones
# (configs/mask2former/mask2former_swin-{b,l}-*_8xb2-160k_ade20k-640x640.py): short side a random choice of
# 0.5x..2.0x 640 (ResizeShortestEdge, long side <= 2560), 640 crop (cat_max_ratio 0.75), flip, photometric
# distortion; testing resizes into 2560x640 keeping the ratio (mmseg's test resize for ADE20K at 640).
# The loaders (PerceptionADE20KDataset, batch 2, label checks) are ade20k_504x504.py's.
_base_ = './ade20k_504x504.py'
crop_size = (640, 640)
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='CheckSegMap', num_classes=150),
    dict(type='RandomChoiceResize', scales=[int(x * 0.1 * 640) for x in range(5, 21)],
         resize_type='ResizeShortestEdge', max_size=2560),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PhotoMetricDistortion'),
    dict(type='PackSegInputs'),  # padding to 640 (seg pad 255) happens in the data preprocessor
]
# any size comes out: the data preprocessor pads test inputs to multiples of 32 (test_cfg.size_divisor)
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(2560, 640), keep_ratio=True),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='CheckSegMap', num_classes=150),
    dict(type='PackSegInputs'),
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader
