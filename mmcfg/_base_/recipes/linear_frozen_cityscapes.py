# Linear probing with a frozen InternViT on cityscapes: the ADE20K recipe (AdamW lr 4e-5,
# wd 0, warmup 1500, poly to 0 at 80k, batch 16) on this dataset's pipelines; no published InternViT numbers.
_base_ = ['../models/linear_internvit.py', '../datasets/cityscapes_504x1008.py', '../default_runtime.py',
          '../schedules/schedule_80k_adamw.py']
optim_wrapper = dict(optimizer=dict(weight_decay=0.0))
model = dict(backbone=dict(frozen=True),
             data_preprocessor=dict(size={{_base_.crop_size}}),
             decode_head=dict(num_classes={{_base_.num_classes}}),
             test_cfg=dict(mode='slide', crop_size=(504, 1008), stride=(336, 672)))
