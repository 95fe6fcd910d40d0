# Full-parameter training on PyTorch FSDP through mmengine's FlexibleRunner, one strategy for every
# model size (the 6B configs and the tiny config that CI runs on 2 CPU processes both inherit it):
# every transformer block is an FSDP unit (full shard: parameters, gradients and AdamW state are
# sharded over the ranks), bf16 compute with fp32 gradient reduction, activation checkpointing per
# block, sharded ('local') checkpoints that resume (tools/consolidate_checkpoint.py merges them).
# PortableFSDPStrategy is mmengine's FSDPStrategy that also runs on CPU (gloo) and keeps layer-wise
# lr decay and gradient clipping exact under sharding (perception/engine/fsdp.py).
runner_type = 'FlexibleRunner'
strategy = dict(
    type='PortableFSDPStrategy',
    model_wrapper=dict(
        auto_wrap_policy=dict(type='internvit_block_wrap_policy'),
        sharding_strategy='FULL_SHARD',
        mixed_precision=dict(param_dtype='bfloat16', reduce_dtype='float32', buffer_dtype='float32'),
        backward_prefetch='BACKWARD_PRE',
        limit_all_gathers=True,
        use_orig_params=True),
    activation_checkpointing=dict(check_fn='internvit_block_checkpoint_fn'),
    state_dict_cfg='local',
    skip_init_weights=False)
# The optimizer wrapper of the 6B recipes under FSDP, which casts parameters to bf16 itself: a plain
# OptimWrapper (no autocast on top), AdamW lr 4e-5, wd 0.05, layer-wise lr decay 0.95, no clipping.
# A config takes it whole with `optim_wrapper = {{_base_.fsdp_optim_wrapper}}` (_delete_ drops the
# recipe's AmpOptimWrapper settings).
fsdp_optim_wrapper = dict(_delete_=True, type='OptimWrapper',
                          optimizer=dict(type='AdamW', lr=4e-5, betas=(0.9, 0.999), weight_decay=0.05),
                          constructor='InternViTLayerDecayOptimWrapperConstructor',
                          paramwise_cfg=dict(layer_decay_rate=0.95), clip_grad=None)
