# An 8-GPU recipe (batch 16 = 8 GPUs x 2) on ONE GPU, listed after the 8-GPU config it changes:
#   _base_ = ['./X_8xb2-80k_....py', '../_base_/recipes/one_gpu_accum8.py']
# Global batch 16 kept as 2 images per step x 8 accumulated steps; 80k optimizer updates with the schedule in
# updates (warmup 1500, poly to 80000: AccumulationSchedulerHook steps the schedules once per update), hence 640k
# forward iterations; validation, checkpoints and log lines at the 8-GPU run's updates. The frozen ViT is held in
# bf16 only (no fp32 copy: `weights_dtype='bf16'`, set by the leaf with the heads' BN); what trains stays fp32
# under bf16 autocast. BatchNorm sees the 2 images of a step (the reference's SyncBN saw 16). Memory:
# docs/segmentation.md.
# mmengine refuses a key that two bases both set, and the 8-GPU config sets the schedule keys: the changes to them
# sit in `one_gpu_schedule`, which the leaf pops out of `_base_` (so that it is no key of the resolved config) and
# assigns itself:
#   __s = _base_.pop('one_gpu_schedule')
#   optim_wrapper, train_cfg, default_hooks = __s.optim_wrapper, __s.train_cfg, __s.default_hooks
accumulative_counts = 8
bn = dict(type='BN', requires_grad=True)  # one process: no SyncBN
one_gpu_schedule = dict(
    optim_wrapper=dict(accumulative_counts=accumulative_counts),
    train_cfg=dict(max_iters=80000 * accumulative_counts, val_interval=8000 * accumulative_counts),
    default_hooks=dict(param_scheduler=dict(_delete_=True, type='AccumulationSchedulerHook'),
                       logger=dict(interval=50 * accumulative_counts),
                       checkpoint=dict(interval=8000 * accumulative_counts)))
