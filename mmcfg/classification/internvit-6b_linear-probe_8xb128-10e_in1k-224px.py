# ImageNet-1K linear probing of the frozen InternViT-6B-224px, cls_patch_concat probe.
# Published top-1 88.2 (IN-ReaL 90.4, V2 79.9, A 77.5, R 89.8, Sketch 69.1).
_base_ = [
    '../_base_/models/internvit-6b_linear-probe.py', '../_base_/datasets/imagenet_internvit_224px.py',
    '../_base_/schedules/imagenet_linear-probe_sgd_10e.py', '../_base_/cls_runtime.py'
]
