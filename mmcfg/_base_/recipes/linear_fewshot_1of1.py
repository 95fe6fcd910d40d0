# Few-shot (InternVL): the linear head on a trained backbone (drop path 0.4, layer-wise lr decay
# 0.95, AdamW lr 4e-5, wd 0.05, batch 16, crop 504) on a seeded 1/N subset of the training set
# (seeded shuffle, first len // N; FewShotSubsetHook writes the list). This is N = 1: every image,
# 80k iterations, warmup 1500, tested with short side 504. linear_fewshot_1of2.py .. 1of16.py
# change the subset, iterations and warmup; a leaf in mmcfg/internvit/ names the backbone.
_base_ = ['../models/linear_internvit.py', '../datasets/ade20k_504x504.py', '../default_runtime.py',
          '../schedules/schedule_80k_adamw.py']
model = dict(backbone=dict(img_size=504, frozen=False, drop_path_rate=0.4, with_cp=True))
train_dataloader = dict(dataset=dict(few_shot_divisor=None, few_shot_seed=0))
custom_hooks = [dict(type='LearningCurveHook'), dict(type='FewShotSubsetHook')]
optim_wrapper = dict(constructor='InternViTLayerDecayOptimWrapperConstructor',
                     paramwise_cfg=dict(layer_decay_rate=0.95))
