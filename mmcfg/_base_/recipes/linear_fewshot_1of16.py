# Few-shot 1/16: a sixteenth of the training set, 5000 iterations, warmup 100 (tested as 1/2 is);
# validation and checkpoint at the end (every 5000 iterations).
_base_ = './linear_fewshot_1of2.py'
train_dataloader = dict(dataset=dict(few_shot_divisor=16))
param_scheduler = [dict(type='LinearLR', start_factor=1e-6, by_epoch=False, begin=0, end=100),
                   dict(type='PolyLR', power=1.0, eta_min=0.0, by_epoch=False, begin=100, end=5000)]
train_cfg = dict(max_iters=5000, val_interval=5000)
default_hooks = dict(checkpoint=dict(interval=5000))
