# Evaluate an InternViT-6B-224px linear probe (tools/test.py CONFIG CHECKPOINT) on ImageNet-ReaL (the ImageNet val images, ReaL labels from timm's package data). Published 90.4.
_base_ = ['./internvit-6b_linear-probe_8xb128-10e_in1k-224px.py']
# the ImageNet validation split of the base config, scored against the ReaL labels
test_evaluator = dict(_delete_=True, type='ReaLAccuracy')
