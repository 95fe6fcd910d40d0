# ImageNet-1K probing of the frozen InternViT-6B-224px with attention pooling: a cross-attention
# block (dim 3200, 25 heads, qkv bias, LayerNorm eps 1e-5) whose query is the mean of all tokens,
# then BatchNorm(3200, eps 1e-6) and Linear(3200, 1000).
_base_ = ['./internvit-6b_linear-probe_8xb128-10e_in1k-224px.py']
model = dict(
    neck=dict(_delete_=True, type='AttentionPoolingNeck', embed_dims=3200, num_heads=25, norm_eps=1e-5),
    head=dict(in_channels=3200))
