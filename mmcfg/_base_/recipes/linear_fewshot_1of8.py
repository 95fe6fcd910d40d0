# Few-shot 1/8: a eighth of the training set, 10000 iterations, warmup 200 (tested as 1/2 is).
_base_ = './linear_fewshot_1of2.py'
train_dataloader = dict(dataset=dict(few_shot_divisor=8))
param_scheduler = [dict(type='LinearLR', start_factor=1e-6, by_epoch=False, begin=0, end=200),
                   dict(type='PolyLR', power=1.0, eta_min=0.0, by_epoch=False, begin=200, end=10000)]
train_cfg = dict(max_iters=10000)
