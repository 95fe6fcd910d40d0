# Full tuning (InternVL): the backbone trained (drop path 0.4, layer-wise lr decay 0.95, activation
# checkpointing, pos_embed trained at 36x36), pyramid + UperNet, the auxiliary FCN on the 1x level
# (in_index=2); AdamW lr 4e-5, wd 0.05, warmup 1500, poly to 0 at 80k, batch 16, crop 504.
_base_ = ['../models/upernet_internvit.py', '../datasets/ade20k_504x504.py', '../default_runtime.py',
          '../schedules/schedule_80k_adamw.py']
model = dict(backbone=dict(img_size=504, frozen=False, drop_path_rate=0.4, with_cp=True),
             auxiliary_head=dict(in_index=2))
optim_wrapper = dict(constructor='InternViTLayerDecayOptimWrapperConstructor',
                     paramwise_cfg=dict(layer_decay_rate=0.95))
