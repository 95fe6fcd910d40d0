# Few-shot 1/4: a quarter of the training set, 20000 iterations, warmup 400 (tested as 1/2 is).
_base_ = './linear_fewshot_1of2.py'
train_dataloader = dict(dataset=dict(few_shot_divisor=4))
param_scheduler = [dict(type='LinearLR', start_factor=1e-6, by_epoch=False, begin=0, end=400),
                   dict(type='PolyLR', power=1.0, eta_min=0.0, by_epoch=False, begin=400, end=20000)]
train_cfg = dict(max_iters=20000)
