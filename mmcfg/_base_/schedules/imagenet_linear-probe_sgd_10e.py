# InternVL's ImageNet linear probe as executed: SGD nesterov momentum 0.9, base lr 0.1 per 512 images
# (0.2 at the official batch 1024 = 8 GPUs x 128), weight decay 0, gradient clipping 5.0, 10 epochs,
# 1 linear warmup epoch then cosine per step to 0, EMA of the head 0.998. Mixed precision: bf16
# autocast over fp32 weights (the run used fp16; bf16 needs no loss scaling).
optim_wrapper = dict(
    type='AmpOptimWrapper',
    dtype='bfloat16',
    optimizer=dict(type='SGD', lr=0.2, momentum=0.9, nesterov=True, weight_decay=0.0),
    clip_grad=dict(max_norm=5.0))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=True, begin=0, end=1, convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', T_max=9, eta_min=0.0, by_epoch=True, begin=1, end=10,
         convert_to_iter_based=True),
]
train_cfg = dict(by_epoch=True, max_epochs=10, val_interval=1)
val_cfg = dict()
test_cfg = dict()
# lr 0.2 is for batch 1024: tools/train.py --auto-scale-lr scales it to the run's batch (off by default,
# as in mmengine: other batch sizes keep lr 0.2 unless asked)
auto_scale_lr = dict(enable=False, base_batch_size=1024)
custom_hooks = [dict(type='HeadEMAHook', momentum=0.002)]
