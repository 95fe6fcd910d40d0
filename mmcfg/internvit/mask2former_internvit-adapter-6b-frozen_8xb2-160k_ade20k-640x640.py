# Frozen InternViT-6B (224px release, patch 16: the 14-px kernel resampled at load, announced) + ViT-Adapter +
# Mask2Former on ADE20K at 640x640. Backbone settings as the adapter + UperNet recipe
# (upernet_internvit-adapter-6b-frozen_8xb2-80k_ade20k-512x512.py, InternVL-MMDetSeg's): interactions
# [[0, 11], [12, 23], [24, 35], [36, 47]], deform / cffn ratio 0.25, init_values 0, with_cp, the ViT frozen.
# Head, crop, pipeline and schedule: mmseg's Mask2Former ADE20K configs for large backbones (Swin-L at 640:
# 100 queries, 160k iterations, AdamW 1e-4, poly 0.9, clip 0.01, batch 16); see the recipe for what came from
# which mmseg config. No published number for this combination: a first baseline.
_base_ = '../_base_/recipes/mask2former_adapter_frozen.py'
