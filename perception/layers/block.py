import torch
from torch import nn

from .attention import Attention
from .drop_path import DropPath
from .layer_scale import LayerScale
from .mlp import Mlp
from .norm import build_norm


class Block(nn.Module):
    """Pre-norm transformer block of InternViT.

    ``x = x + drop_path(ls1(attn(norm1(x))))``; ``x = x + drop_path(ls2(mlp(norm2(x))))``.
    """

    def __init__(self, embed_dims: int, num_heads: int, feedforward_channels: int, norm_type: str = 'rms_norm',
                 norm_eps: float = 1e-6, qkv_bias: bool = False, qk_normalization: bool = True,
                 layer_scale_init: float = 0.1, drop_path: float = 0., attn_backend: str = 'auto'):
        super().__init__()
        self.norm1 = build_norm(norm_type, embed_dims, norm_eps)
        self.attn = Attention(embed_dims, num_heads, qkv_bias=qkv_bias, qk_normalization=qk_normalization,
                              norm_eps=norm_eps, attn_backend=attn_backend)
        self.ls1 = LayerScale(embed_dims, layer_scale_init)
        self.norm2 = build_norm(norm_type, embed_dims, norm_eps)
        self.mlp = Mlp(embed_dims, feedforward_channels)
        self.ls2 = LayerScale(embed_dims, layer_scale_init)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_path(self.ls1(self.attn(self.norm1(x))))
        x = x + self.drop_path(self.ls2(self.mlp(self.norm2(x))))
        return x
