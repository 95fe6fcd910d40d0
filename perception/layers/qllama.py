"""QLLaMA, the language half of InternVL-C / InternVL-G, as a plain ``nn.Module``.

A LLaMA-7B decoder (RMSNorm eps 1e-6, rotary position embedding with the rotate-half convention,
gated SiLU MLP, no biases) whose every ``cross_attention_frequency``-th layer (0, 2, ...) also holds a
cross-attention from the first ``num_query_token`` positions (InternVL-G's learnable queries) to the
ViT tokens. Two ways through it, both as InternVL's release (``modeling_qllama.py``) runs them:

* text (:meth:`QLLaMA.forward_text`): token ids, causal mask plus a padding mask from ``ids > 0``,
  no cross-attention; the final RMSNorm's output for every position;
* queries (:meth:`QLLaMA.forward_queries`): the queries alone, bidirectional, cross-attending the
  ViT tokens on the cross-attention layers; the final RMSNorm's output.

Parameter names follow the release's ``qllama.model.*`` (``embed_tokens``, ``layers.N.self_attn.*``,
``layers.N.cross_attn.*``, ``layers.N.mlp.*``, ``input_layernorm``, ``post_attention_layernorm``,
``norm``), so converting a checkpoint is a prefix change. Attention runs through PyTorch SDPA; the
release's explicit softmax is in float32 and SDPA's CPU and CUDA kernels accumulate in float32 too.
"""
from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .norm import RMSNorm

ROPE_BASE = 10000.0


def rope_inv_freq(head_dim: int, base: float = ROPE_BASE, device=None) -> torch.Tensor:
    """The rotary frequencies ``1 / base^(2i / head_dim)`` in float32 (the checkpoints' ``inv_freq``)."""
    return 1.0 / (base ** (torch.arange(0, head_dim, 2, device=device).float() / head_dim))


def rope_cos_sin(positions: int, head_dim: int, dtype: torch.dtype, device=None):
    """``cos`` and ``sin`` ``[positions, head_dim]``: computed in float32, then cast to the activations'
    dtype, as the release's ``FixedLlamaRotaryEmbedding`` returns them."""
    t = torch.arange(positions, device=device, dtype=torch.float32)
    freqs = torch.outer(t, rope_inv_freq(head_dim, device=device))
    emb = torch.cat((freqs, freqs), dim=-1)
    return emb.cos().to(dtype), emb.sin().to(dtype)


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """``x`` ``[B, heads, N, head_dim]`` rotated by position (``cos``/``sin`` ``[N, head_dim]``)."""
    return x * cos + rotate_half(x) * sin


class SelfAttention(nn.Module):
    """LLaMA self-attention: q/k/v/o without bias, rotary on q and k, an optional additive mask."""

    def __init__(self, hidden_size: int, num_heads: int):
        super().__init__()
        if hidden_size % num_heads:
            raise ValueError(f'QLLaMA hidden_size {hidden_size} is not divisible by num_heads {num_heads}')
        self.num_heads, self.head_dim = num_heads, hidden_size // num_heads
        self.q_proj = nn.Linear(hidden_size, hidden_size, bias=False)
        self.k_proj = nn.Linear(hidden_size, hidden_size, bias=False)
        self.v_proj = nn.Linear(hidden_size, hidden_size, bias=False)
        self.o_proj = nn.Linear(hidden_size, hidden_size, bias=False)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
                mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        B, N, C = x.shape
        H, D = self.num_heads, self.head_dim
        q = apply_rope(self.q_proj(x).view(B, N, H, D).transpose(1, 2), cos, sin)
        k = apply_rope(self.k_proj(x).view(B, N, H, D).transpose(1, 2), cos, sin)
        v = self.v_proj(x).view(B, N, H, D).transpose(1, 2)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return self.o_proj(out.transpose(1, 2).reshape(B, N, C))


class CrossAttention(nn.Module):
    """QLLaMA's cross-attention from the queries to the ViT tokens: RMSNorm on each side (``norm1``
    on the queries, ``norm2`` on the vision tokens), no rotary, no mask, no biases."""

    def __init__(self, hidden_size: int, num_heads: int, vision_width: int, eps: float = 1e-6):
        super().__init__()
        self.num_heads, self.head_dim = num_heads, hidden_size // num_heads
        self.q_proj = nn.Linear(hidden_size, hidden_size, bias=False)
        self.k_proj = nn.Linear(vision_width, hidden_size, bias=False)
        self.v_proj = nn.Linear(vision_width, hidden_size, bias=False)
        self.o_proj = nn.Linear(hidden_size, hidden_size, bias=False)
        self.norm1 = RMSNorm(hidden_size, eps=eps)
        self.norm2 = RMSNorm(vision_width, eps=eps)

    def forward(self, x: torch.Tensor, vision: torch.Tensor) -> torch.Tensor:
        B, N, C = x.shape
        H, D = self.num_heads, self.head_dim
        q = self.q_proj(self.norm1(x)).view(B, N, H, D).transpose(1, 2)
        vis = self.norm2(vision)
        M = vis.shape[1]
        k = self.k_proj(vis).view(B, M, H, D).transpose(1, 2)
        v = self.v_proj(vis).view(B, M, H, D).transpose(1, 2)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.o_proj(out.transpose(1, 2).reshape(B, N, C))


class GatedMLP(nn.Module):
    """``down(silu(gate(x)) * up(x))``, no biases."""

    def __init__(self, hidden_size: int, intermediate_size: int):
        super().__init__()
        self.gate_proj = nn.Linear(hidden_size, intermediate_size, bias=False)
        self.up_proj = nn.Linear(hidden_size, intermediate_size, bias=False)
        self.down_proj = nn.Linear(intermediate_size, hidden_size, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class DecoderLayer(nn.Module):
    """Self-attention, then (on a cross-attention layer, when vision tokens are given) the
    cross-attention on the first ``num_query`` positions only, then the MLP; pre-norm residuals."""

    def __init__(self, hidden_size: int, num_heads: int, intermediate_size: int, eps: float,
                 cross_attention: bool, vision_width: int):
        super().__init__()
        self.self_attn = SelfAttention(hidden_size, num_heads)
        self.cross_attn = CrossAttention(hidden_size, num_heads, vision_width, eps) if cross_attention else None
        self.mlp = GatedMLP(hidden_size, intermediate_size)
        self.input_layernorm = RMSNorm(hidden_size, eps=eps)
        self.post_attention_layernorm = RMSNorm(hidden_size, eps=eps)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, mask: Optional[torch.Tensor] = None,
                vision: Optional[torch.Tensor] = None, num_query: int = 0) -> torch.Tensor:
        x = x + self.self_attn(self.input_layernorm(x), cos, sin, mask)
        if self.cross_attn is not None and vision is not None and x.shape[1] >= num_query:
            q = x[:, :num_query]
            x = torch.cat([q + self.cross_attn(q, vision), x[:, num_query:]], dim=1)
        return x + self.mlp(self.post_attention_layernorm(x))


class QLLaMA(nn.Module):
    """The QLLaMA decoder (no ``lm_head``: the embeddings never use it).

    ``with_embeddings=False`` leaves out ``embed_tokens`` (the queries' path does not read it) and
    ``with_cross_attention=False`` the cross-attention modules (the text path does not run them), so a
    model loaded for one use holds only what it runs.
    """

    def __init__(self, vocab_size: int = 49954, hidden_size: int = 4096, num_layers: int = 32,
                 num_heads: int = 32, intermediate_size: int = 11008, eps: float = 1e-6,
                 cross_attention_frequency: int = 2, vision_width: int = 3200, num_query_token: int = 96,
                 with_embeddings: bool = True, with_cross_attention: bool = True):
        super().__init__()
        if cross_attention_frequency < 1:
            raise ValueError(f'cross_attention_frequency must be >= 1, got {cross_attention_frequency}')
        self.hidden_size, self.num_heads = hidden_size, num_heads
        self.num_query_token = num_query_token
        self.embed_tokens = nn.Embedding(vocab_size, hidden_size) if with_embeddings else None
        self.layers = nn.ModuleList([
            DecoderLayer(hidden_size, num_heads, intermediate_size, eps,
                         with_cross_attention and i % cross_attention_frequency == 0, vision_width)
            for i in range(num_layers)])
        self.norm = RMSNorm(hidden_size, eps=eps)

    @property
    def cross_attention_layers(self) -> Sequence[int]:
        return [i for i, layer in enumerate(self.layers) if layer.cross_attn is not None]

    def _run(self, x: torch.Tensor, mask: Optional[torch.Tensor], vision: Optional[torch.Tensor]) -> torch.Tensor:
        cos, sin = rope_cos_sin(x.shape[1], self.hidden_size // self.num_heads, x.dtype, x.device)
        for layer in self.layers:
            x = layer(x, cos, sin, mask, vision, self.num_query_token)
        return self.norm(x)

    def forward_text(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Hidden states ``[B, L, hidden]`` of token ids: causal, keys with id 0 masked out.

        The mask is the release's additive one (``finfo.min`` where masked, causal and padding summed
        and clamped at ``finfo.min``), so a row whose every key is masked averages uniformly as there
        rather than giving NaN."""
        if self.embed_tokens is None:
            raise RuntimeError('this QLLaMA was built without its token embeddings (loaded for the '
                               'InternVL-G queries only): load the text part to encode text')
        x = self.embed_tokens(input_ids)
        B, L = input_ids.shape
        lo = torch.finfo(x.dtype).min
        pad = torch.zeros(B, 1, 1, L, dtype=torch.float32, device=x.device).masked_fill(
            (input_ids <= 0)[:, None, None, :], lo)
        causal = torch.full((L, L), lo, dtype=torch.float32, device=x.device).triu(1)
        mask = (pad + causal).clamp(min=lo).to(x.dtype)
        return self._run(x, mask, None)

    def forward_queries(self, queries: torch.Tensor, vision: torch.Tensor) -> torch.Tensor:
        """Hidden states ``[B, Q, hidden]`` of the queries, bidirectional, cross-attending ``vision``."""
        if not self.cross_attention_layers:
            raise RuntimeError('this QLLaMA was built without its cross-attention (loaded for text or '
                               'InternVL-C only): load the InternVL-G queries part')
        return self._run(queries, None, vision)
