# Evaluate an InternViT-6B-224px linear probe (tools/test.py CONFIG CHECKPOINT) on ImageNet-R (200 synset folders; only their 200 of the 1000 logits are scored). Published 89.8.
_base_ = ['./internvit-6b_linear-probe_8xb128-10e_in1k-224px.py']
test_dataloader = dict(dataset=dict(type='CheckedImageFolder', data_root='data/imagenet-r', data_prefix='', pipeline={{_base_.test_pipeline}}))
test_evaluator = dict(_delete_=True, type='SubsetAccuracy', subset='imagenet-r', topk=(1, 5))
