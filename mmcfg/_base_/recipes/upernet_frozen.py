# Head tuning (InternVL): the backbone frozen; pyramid + UperNet on four blocks, the auxiliary FCN
# on the 2x level (in_index=1); AdamW lr 4e-5, wd 0.05, warmup 1500, poly to 0 at 80k, batch 16,
# crop 504, slide 504/322. A leaf in mmcfg/internvit/ names the backbone.
_base_ = ['../models/upernet_internvit.py', '../datasets/ade20k_504x504.py', '../default_runtime.py',
          '../schedules/schedule_80k_adamw.py']
model = dict(backbone=dict(frozen=True), auxiliary_head=dict(in_index=1))
