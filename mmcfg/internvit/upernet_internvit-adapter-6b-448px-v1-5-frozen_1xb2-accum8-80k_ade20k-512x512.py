# Frozen ViT + ViT-Adapter + UperNet on ONE GPU, the recipe of
# ./upernet_internvit-adapter-6b-448px-v1-5-frozen_8xb2-80k_ade20k-512x512.py
# kept: global batch 16 as 2 images per step x 8 accumulated steps, 80k optimizer updates with the schedule in updates
# (warmup 1500, poly to 80000: AccumulationSchedulerHook steps the schedules once per update), hence 640k forward
# iterations. The frozen ViT (patch embedding, position embedding, blocks) is held in bf16 only (no fp32 copy); the
# adapter, UperNet and FCN keep fp32 weights and train under bf16 autocast; gradients flow through the bf16 blocks
# to the injectors. BatchNorm sees the 2 images of a step (the reference's SyncBN saw 16). Memory: docs/segmentation.md.
_base_ = './upernet_internvit-adapter-6b-448px-v1-5-frozen_8xb2-80k_ade20k-512x512.py'
accumulative_counts = 8
bn = dict(type='BN', requires_grad=True)  # one process: no SyncBN
model = dict(backbone=dict(weights_dtype='bf16'), decode_head=dict(norm_cfg=bn), auxiliary_head=dict(norm_cfg=bn))
optim_wrapper = dict(accumulative_counts=accumulative_counts)
train_cfg = dict(max_iters=80000 * accumulative_counts, val_interval=8000 * accumulative_counts)
default_hooks = dict(param_scheduler=dict(_delete_=True, type='AccumulationSchedulerHook'),
                     logger=dict(interval=50 * accumulative_counts),
                     checkpoint=dict(interval=8000 * accumulative_counts))
