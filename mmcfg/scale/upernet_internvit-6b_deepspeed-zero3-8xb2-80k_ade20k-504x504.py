# Full tuning of InternViT-6B + UperNet with DeepSpeed ZeRO-3 (alternative to the FSDP config).
_base_ = ['../internvit/upernet_internvit-6b_8xb2-80k_ade20k-504x504.py', '../_base_/deepspeed_6b.py']
strategy = dict(zero_optimization=dict(stage=3))
optim_wrapper = dict(_delete_=True, type='DeepSpeedOptimWrapper',
                     optimizer=dict(type='AdamW', lr=4e-5, betas=(0.9, 0.999), weight_decay=0.05),
                     constructor='InternViTLayerDecayOptimWrapperConstructor',
                     paramwise_cfg=dict(num_layers=48, layer_decay_rate=0.95))
