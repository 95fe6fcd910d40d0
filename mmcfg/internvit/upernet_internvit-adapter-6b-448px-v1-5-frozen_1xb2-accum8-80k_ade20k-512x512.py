# Frozen ViT + ViT-Adapter + UperNet on ONE GPU: the 8-GPU recipe of the first base, changed by the second
# (batch 16 as 2 x 8 accumulated steps, the ViT held in bf16, BN); gradients flow through the bf16 blocks to
# the injectors.
_base_ = ['./upernet_internvit-adapter-6b-448px-v1-5-frozen_8xb2-80k_ade20k-512x512.py',
          '../_base_/recipes/one_gpu_accum8.py']
__s = _base_.pop('one_gpu_schedule')  # the second base's schedule changes, not a key of this config
optim_wrapper, train_cfg, default_hooks = __s.optim_wrapper, __s.train_cfg, __s.default_hooks
model = dict(backbone=dict(weights_dtype='bf16'), decode_head=dict(norm_cfg=_base_.bn),
             auxiliary_head=dict(norm_cfg=_base_.bn))
