# Few-shot 1/16 full-parameter training of InternViT-6B (linear head on block 47) with FSDP.
_base_ = ['../internvit/linear_internvit-6b-fewshot-1of16_8xb2-5k_ade20k-504x504.py', '../_base_/fsdp.py']
model = dict(backbone=dict(with_cp=False))  # checkpointing is applied per FSDP unit by the strategy
optim_wrapper = {{_base_.fsdp_optim_wrapper}}  # plain OptimWrapper: FSDP casts to bf16 itself
