# Frozen ViT + ViT-Adapter (InternVL-MMDetSeg's recipe, 58.1 mIoU with the 224px 6B): the ViT frozen, the
# adapter and UperNet (channels 1536, aux FCN on the stride-16 map, channels 1536) trained; AdamW lr 4e-5,
# wd 0.05, layer-wise lr decay 0.95 (the fork's CustomLayerDecayOptimizerConstructor: adapter, heads 1.0; the
# frozen blocks have no parameters to train), warmup 1500, poly to 0 at 80k, batch 16, crop 512, slide
# 512/341. The fork trains in fp16 with DeepSpeed ZeRO-1; here bf16 autocast. A leaf in mmcfg/internvit/
# names the ViT release.
_base_ = ['../models/upernet_internvit_adapter.py', '../datasets/ade20k_512x512.py', '../default_runtime.py',
          '../schedules/schedule_80k_adamw.py']
model = dict(backbone=dict(freeze_vit=True))
optim_wrapper = dict(constructor='InternViTLayerDecayOptimWrapperConstructor',
                     paramwise_cfg=dict(layer_decay_rate=0.95))
