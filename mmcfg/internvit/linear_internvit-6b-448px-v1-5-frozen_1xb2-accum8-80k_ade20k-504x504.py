# Linear probing (frozen backbone): BN + 1x1 conv on block 44.
# On ONE GPU, the published recipe kept: global batch 16 as 2 images per step x 8 accumulated steps,
# 80k optimizer updates with the schedule in updates (warmup 1500, poly to 80000: AccumulationSchedulerHook
# steps the schedules once per update), hence 640k forward iterations. The frozen backbone is held in
# bf16 only (no fp32 copy) and runs without autograd; pyramid and heads train under bf16 autocast.
# BatchNorm sees the 2 images of a step (the reference's SyncBN saw 16). Memory: docs/segmentation.md.
_base_ = './linear_internvit-6b-448px-v1-5-frozen_8xb2-80k_ade20k-504x504.py'
accumulative_counts = 8
bn = dict(type='BN', requires_grad=True)  # one process: no SyncBN
model = dict(backbone=dict(weights_dtype='bf16'), decode_head=dict(norm_cfg=bn))
optim_wrapper = dict(accumulative_counts=accumulative_counts)
train_cfg = dict(max_iters=80000 * accumulative_counts, val_interval=8000 * accumulative_counts)
default_hooks = dict(param_scheduler=dict(_delete_=True, type='AccumulationSchedulerHook'),
                     logger=dict(interval=50 * accumulative_counts),
                     checkpoint=dict(interval=8000 * accumulative_counts))
