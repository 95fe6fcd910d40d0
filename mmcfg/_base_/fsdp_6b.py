# Full-parameter training of InternViT-6B on PyTorch FSDP through mmengine's FlexibleRunner:
# every transformer block is an FSDP unit (full shard: parameters, gradients and AdamW state are
# sharded over the GPUs), bf16 compute with fp32 gradient reduction, activation checkpointing per
# block, sharded ('local') checkpoints that resume. Layer-wise lr decay reads through the
# `_fsdp_wrapped_module.` prefixes (use_orig_params=True keeps per-parameter names and groups).
runner_type = 'FlexibleRunner'
strategy = dict(
    type='FSDPStrategy',
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
