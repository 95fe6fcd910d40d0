# Evaluate an InternViT-6B-224px linear probe (tools/test.py CONFIG CHECKPOINT) on ImageNet-V2 matched-frequency (class folders named 0..999). Published 79.9.
_base_ = ['./internvit-6b_linear-probe_8xb128-10e_in1k-224px.py']
test_dataloader = dict(dataset=dict(type='CheckedImageFolder', data_root='data/imagenetv2-matched-frequency', data_prefix='', numeric_classes=True, pipeline={{_base_.test_pipeline}}))
test_evaluator = dict(_delete_=True, type='Accuracy', topk=(1, 5))
