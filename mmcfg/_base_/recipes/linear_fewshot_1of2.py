# Few-shot 1/2: half the training set, 40k iterations, warmup 800. The subset runs (1/2 .. 1/16)
# test with a plain keep-ratio resize capped at 2016 (the 1/1 run forces short side 504).
_base_ = './linear_fewshot_1of1.py'
train_dataloader = dict(dataset=dict(few_shot_divisor=2))
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(2016, 504), keep_ratio=True),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='CheckSegMap', num_classes=150),
    dict(type='PackSegInputs'),
]
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader
param_scheduler = [dict(type='LinearLR', start_factor=1e-6, by_epoch=False, begin=0, end=800),
                   dict(type='PolyLR', power=1.0, eta_min=0.0, by_epoch=False, begin=800, end=40000)]
train_cfg = dict(max_iters=40000)
