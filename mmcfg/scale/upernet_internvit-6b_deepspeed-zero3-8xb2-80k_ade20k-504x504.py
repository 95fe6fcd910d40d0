# Full tuning of InternViT-6B + UperNet with DeepSpeed ZeRO-3 (alternative to the FSDP config):
# the ZeRO-2 config with parameters sharded too.
_base_ = ['./upernet_internvit-6b_deepspeed-zero2-8xb2-80k_ade20k-504x504.py']
strategy = dict(zero_optimization=dict(stage=3))
