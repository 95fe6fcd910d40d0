# Full tuning with ViT-Adapter (as ViT-Adapter trains ViT-L): the ViT trained too (drop path 0.4, activation
# checkpointing, layer-wise lr decay 0.95: blocks by depth, the adapter and heads at 1.0 as the fork's
# constructor gives them), adapter + UperNet; AdamW lr 4e-5, wd 0.05, warmup 1500, poly to 0 at 80k, batch 16,
# crop 512, slide 512/341. A leaf in mmcfg/internvit/ names the ViT and its adapter widths.
_base_ = ['../models/upernet_internvit_adapter.py', '../datasets/ade20k_512x512.py', '../default_runtime.py',
          '../schedules/schedule_80k_adamw.py']
model = dict(backbone=dict(freeze_vit=False, drop_path_rate=0.4, with_cp=True))
optim_wrapper = dict(constructor='InternViTLayerDecayOptimWrapperConstructor',
                     paramwise_cfg=dict(layer_decay_rate=0.95))
