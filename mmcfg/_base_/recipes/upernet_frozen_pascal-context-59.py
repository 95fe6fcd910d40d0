# Head tuning (UperNet) with a frozen InternViT on pascal-context-59: the ADE20K recipe (AdamW lr 4e-5,
# wd 0.05, warmup 1500, poly to 0 at 80k, batch 16) on this dataset's pipelines; no published InternViT numbers.
_base_ = ['../models/upernet_internvit.py', '../datasets/pascal-context-59_476x476.py', '../default_runtime.py',
          '../schedules/schedule_80k_adamw.py']
model = dict(backbone=dict(frozen=True),
             data_preprocessor=dict(size={{_base_.crop_size}}),
             decode_head=dict(num_classes={{_base_.num_classes}}),
             auxiliary_head=dict(in_index=1, num_classes={{_base_.num_classes}}),
             test_cfg=dict(mode='slide', crop_size=(476, 476), stride=(308, 308)))
