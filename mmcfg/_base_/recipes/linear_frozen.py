# Linear probing (InternVL): the backbone frozen, BN + 1x1 conv on one block; AdamW lr 4e-5, wd 0,
# warmup 1500, poly to 0 at 80k, batch 16 (8 GPUs x 2), crop 504, slide 504/322. A leaf in
# mmcfg/internvit/ names the backbone: arch, block, checkpoint, channels.
_base_ = ['../models/linear_internvit.py', '../datasets/ade20k_504x504.py', '../default_runtime.py',
          '../schedules/schedule_80k_adamw.py']
optim_wrapper = dict(optimizer=dict(weight_decay=0.0))
