# Full tuning of InternViT-6B + UperNet (published 58.9 mIoU) on 8 x 80 GB GPUs with FSDP.
# The reference code cannot train this in its public release; see docs/scaling.md for the memory plan.
_base_ = ['../internvit/upernet_internvit-6b_8xb2-80k_ade20k-504x504.py', '../_base_/fsdp.py']
model = dict(backbone=dict(with_cp=False))  # checkpointing is applied per FSDP unit by the strategy
# FSDP casts parameters to bf16 itself: a plain optimizer wrapper, no autocast on top
optim_wrapper = dict(_delete_=True, type='OptimWrapper',
                     optimizer=dict(type='AdamW', lr=4e-5, betas=(0.9, 0.999), weight_decay=0.05),
                     constructor='InternViTLayerDecayOptimWrapperConstructor',
                     paramwise_cfg=dict(layer_decay_rate=0.95), clip_grad=None)
