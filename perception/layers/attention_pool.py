"""Attention pooling, InternVL's ``clip_projector`` / ``clip_projector2`` (``AttentionPoolingBlock``).

One query, the mean of all input tokens (the class token included, taken before any norm), attends
to the tokens: separate LayerNorms (eps 1e-5) for the query, the keys and the values; q/k/v maps
without bias plus separate bias vectors (``cross_attn.{q,k,v}_bias``, as released); ``num_heads``
heads of ``dim / num_heads``; the concatenated heads through ``cross_attn.proj`` (with bias) to
``out_dim``. No residual, no MLP. Parameter names are the release's, so checkpoints load as they are.
"""
import torch
import torch.nn.functional as F
from torch import nn

from .norm import LayerNormFp32


class PoolingAttention(nn.Module):
    """The release's ``CrossAttention`` with ``qkv_bias=True`` (names ``q``, ``k``, ``v``, ``*_bias``, ``proj``)."""

    def __init__(self, dim: int, num_heads: int, out_dim: int):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f'attention pooling: dim {dim} is not divisible by num_heads {num_heads}')
        self.num_heads = num_heads
        self.q = nn.Linear(dim, dim, bias=False)
        self.k = nn.Linear(dim, dim, bias=False)
        self.v = nn.Linear(dim, dim, bias=False)
        self.q_bias = nn.Parameter(torch.zeros(dim))
        self.k_bias = nn.Parameter(torch.zeros(dim))
        self.v_bias = nn.Parameter(torch.zeros(dim))
        self.proj = nn.Linear(dim, out_dim)

    def reset_parameters(self):
        for b in (self.q_bias, self.k_bias, self.v_bias):
            nn.init.zeros_(b)

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        B, N, C = q.shape
        H = self.num_heads

        def heads(x, w, b):
            return F.linear(x, w, b).view(B, x.shape[1], H, C // H).transpose(1, 2)
        out = F.scaled_dot_product_attention(heads(q, self.q.weight, self.q_bias), heads(k, self.k.weight, self.k_bias),
                                             heads(v, self.v.weight, self.v_bias))
        return self.proj(out.transpose(1, 2).reshape(B, N, C))


class AttentionPool(nn.Module):
    """``[B, N, dim]`` tokens -> ``[B, out_dim]``: the mean token as the query of one attention."""

    def __init__(self, dim: int, num_heads: int = 16, out_dim: int = 768, eps: float = 1e-5):
        super().__init__()
        self.norm1_q = LayerNormFp32(dim, eps=eps)
        self.norm1_k = LayerNormFp32(dim, eps=eps)
        self.norm1_v = LayerNormFp32(dim, eps=eps)
        self.cross_attn = PoolingAttention(dim, num_heads, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q = self.norm1_q(x.mean(1, keepdim=True))
        return self.cross_attn(q, self.norm1_k(x), self.norm1_v(x)).squeeze(1)
