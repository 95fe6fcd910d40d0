# The schedule of mmseg's Mask2Former ADE20K configs (configs/mask2former/):
# - from mask2former_r50_8xb2-160k_ade20k-512x512.py (which every ADE20K Mask2Former config inherits or copies):
#   AdamW lr 1e-4, wd 0.05, eps 1e-8, betas (0.9, 0.999); gradient clipping at max_norm 0.01; backbone lr_mult 0.1;
#   query_embed / query_feat / level_embed without weight decay (lr_mult 1); no decay on norms (norm_decay_mult 0);
#   poly (power 0.9) to 0 over 160k iterations, no warm-up; batch 16 (8 GPUs x 2); validation and checkpoints
#   every 5000 iterations; mmdet's models imported (custom_imports).
# - from mask2former_swin-l-in22k-384x384-pre_8xb2-160k_ade20k-640x640.py (via its swin-b base): the 640x640 crop
#   and its pipeline (mmcfg/_base_/datasets/ade20k_640x640.py), 100 queries; its Swin-specific custom keys
#   (relative_position_bias_table, absolute_pos_embed, the Swin norms) have no InternViT counterpart: here the
#   norms get no weight decay through norm_decay_mult=0 where no custom key names them (a custom key's decay_mult
#   wins: mmseg's Swin configs list every backbone norm for that reason, and so does the 300M config here).
# The recipes mask2former_adapter_frozen.py / _full.py set the backbone's multipliers.
_base_ = ['../models/mask2former_internvit_adapter.py', '../datasets/ade20k_640x640.py', '../default_runtime.py']
# perception's subpackages first (perception.models makes transformers importable for mmdet: perception/compat.py),
# then mmdet's models (the pixel decoder, assigner, match costs and losses the head names)
custom_imports = dict(imports=['perception.models', 'perception.datasets', 'perception.engine', 'mmdet.models'],
                      allow_failed_imports=False)
embed_multi = dict(lr_mult=1.0, decay_mult=0.0)
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=1e-4, weight_decay=0.05, eps=1e-8, betas=(0.9, 0.999)),
    clip_grad=dict(max_norm=0.01, norm_type=2),
    paramwise_cfg=dict(
        custom_keys={
            'decode_head.query_embed': embed_multi,
            'decode_head.query_feat': embed_multi,
            'decode_head.level_embed': embed_multi,
        },
        norm_decay_mult=0.0))
param_scheduler = [dict(type='PolyLR', eta_min=0, power=0.9, begin=0, end=160000, by_epoch=False)]
# the lr above is for batch 16; tools/train.py --auto-scale-lr scales it linearly to the run's batch
auto_scale_lr = dict(enable=False, base_batch_size=16)
train_cfg = dict(type='IterBasedTrainLoop', max_iters=160000, val_interval=5000)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=50, log_metric_by_epoch=False),
    param_scheduler=dict(type='ParamSchedulerHook'),
    checkpoint=dict(type='SafeCheckpointHook', by_epoch=False, interval=5000, max_keep_ckpts=2, save_best='mIoU'),
    sampler_seed=dict(type='DistSamplerSeedHook'),
    visualization=dict(type='SegVisualizationHook'))
