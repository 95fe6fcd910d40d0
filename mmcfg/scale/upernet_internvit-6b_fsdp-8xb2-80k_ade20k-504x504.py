# Full tuning of InternViT-6B + UperNet (published 58.9 mIoU) on 8 x 80 GB GPUs with FSDP.
# The reference code cannot train this in its public release; see docs/scaling.md for the memory plan.
_base_ = ['../internvit/upernet_internvit-6b_8xb2-80k_ade20k-504x504.py', '../_base_/fsdp.py']
model = dict(backbone=dict(with_cp=False))  # checkpointing is applied per FSDP unit by the strategy
optim_wrapper = {{_base_.fsdp_optim_wrapper}}  # plain OptimWrapper: FSDP casts to bf16 itself
