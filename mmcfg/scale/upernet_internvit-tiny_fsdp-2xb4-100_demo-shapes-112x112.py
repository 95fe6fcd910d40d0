# The FSDP strategy of the 6B configs (mmcfg/_base_/fsdp.py) on the tiny demo model and data: what CI
# runs on 2 CPU processes (tools/dist_train.sh THIS_CONFIG 2) is what a 6B run uses on GPUs.
_base_ = ['../demo/upernet_internvit-tiny_1xb8-1k_demo-shapes-112x112.py', '../_base_/fsdp.py']
model = dict(backbone=dict(with_cp=False))  # checkpointing is applied per FSDP unit by the strategy
# FSDP casts parameters to bf16 itself: a plain optimizer wrapper, no autocast on top
optim_wrapper = dict(_delete_=True, type='OptimWrapper',
                     optimizer=dict(type='AdamW', lr=1e-3, betas=(0.9, 0.999), weight_decay=0.05),
                     constructor='InternViTLayerDecayOptimWrapperConstructor',
                     paramwise_cfg=dict(layer_decay_rate=0.9), clip_grad=dict(max_norm=1.0))
train_dataloader = dict(batch_size=4)  # per rank: 2 x 4 = the demo's batch of 8
max_iters = 100
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=False, begin=0, end=10),
    dict(type='PolyLR', power=1.0, eta_min=0.0, by_epoch=False, begin=10, end=max_iters),
]
train_cfg = dict(max_iters=max_iters, val_interval=50)
default_hooks = dict(logger=dict(interval=10), checkpoint=dict(interval=50, max_keep_ckpts=2))
