# The DeepSpeed alternative (ZeRO stage set by the leaf config), through mmengine's DeepSpeedStrategy.
# Needs `pip install deepspeed` on the GPU machines (it is not part of the pinned CPU stack).
runner_type = 'FlexibleRunner'
strategy = dict(
    type='DeepSpeedStrategy',
    fp16=dict(enabled=False),
    bf16=dict(enabled=True),
    zero_optimization=dict(
        stage=3,
        allgather_partitions=True,
        reduce_scatter=True,
        allgather_bucket_size=50000000,
        reduce_bucket_size=50000000,
        overlap_comm=True,
        contiguous_gradients=True,
        stage3_gather_16bit_weights_on_model_save=True),
    gradient_clipping=None,
    inputs_to_half=None)
