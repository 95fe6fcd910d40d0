# ImageNet-1K linear probing of the frozen InternViT-6B-448px-V1-5 (45 layers) at 448px.
_base_ = ['./internvit-6b_linear-probe_8xb128-10e_in1k-224px.py']
img_size = 448
model = dict(backbone=dict(arch='6b-448px-v1.5',
                           init_cfg=dict(type='Pretrained', checkpoint='checkpoints/InternViT-6B-448px-V1-5')))
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='RandomResizedCrop', scale=img_size, backend='pillow', interpolation='bicubic'),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='PackInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='ResizeEdge', scale=img_size, edge='short', backend='pillow', interpolation='bicubic'),
    dict(type='CenterCrop', crop_size=img_size),
    dict(type='PackInputs'),
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader
