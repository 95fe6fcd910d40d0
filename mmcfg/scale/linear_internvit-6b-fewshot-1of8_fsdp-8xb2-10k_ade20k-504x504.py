# Few-shot 1/8 full-parameter training of InternViT-6B (linear head on block 47) with FSDP.
_base_ = ['../internvit/linear_internvit-6b-fewshot-1of8_8xb2-10k_ade20k-504x504.py', '../_base_/fsdp.py']
model = dict(backbone=dict(with_cp=False))  # checkpointing is applied per FSDP unit by the strategy
optim_wrapper = dict(_delete_=True, type='OptimWrapper',
                     optimizer=dict(type='AdamW', lr=4e-5, betas=(0.9, 0.999), weight_decay=0.05),
                     constructor='InternViTLayerDecayOptimWrapperConstructor',
                     paramwise_cfg=dict(layer_decay_rate=0.95), clip_grad=None)
