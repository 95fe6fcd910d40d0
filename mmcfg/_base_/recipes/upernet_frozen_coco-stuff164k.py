# Head tuning (UperNet) with a frozen InternViT on coco-stuff164k: the ADE20K recipe (AdamW lr 4e-5,
# wd 0.05, warmup 1500, poly to 0 at 80k, batch 16) on this dataset's pipelines; no published InternViT numbers.
_base_ = ['../models/upernet_internvit.py', '../datasets/coco-stuff164k_504x504.py', '../default_runtime.py',
          '../schedules/schedule_80k_adamw.py']
model = dict(backbone=dict(frozen=True),
             data_preprocessor=dict(size={{_base_.crop_size}}),
             decode_head=dict(num_classes={{_base_.num_classes}}),
             auxiliary_head=dict(in_index=1, num_classes={{_base_.num_classes}}))
