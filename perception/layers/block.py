from typing import Optional

import torch
from torch import nn

from . import compile as block_compile
from .attention import Attention
from .drop_path import DropPath, drop_path_scale
from .layer_scale import LayerScale
from .mlp import Mlp
from .norm import build_norm


class Block(nn.Module):
    """Pre-norm transformer block of InternViT.

    ``x = x + drop_path(ls1(attn(norm1(x))))``; ``x = x + drop_path(ls2(mlp(norm2(x))))``.

    The drop-path scales are drawn outside :meth:`residual_body` and passed in as tensors, so one
    compiled body (``compile_blocks``, :mod:`.compile`) serves every block whatever its rate.
    """

    def __init__(self, embed_dims: int, num_heads: int, feedforward_channels: int, norm_type: str = 'rms_norm',
                 norm_eps: float = 1e-6, qkv_bias: bool = False, qk_normalization: bool = True,
                 layer_scale_init: float = 0.1, drop_path: float = 0., attn_backend: str = 'auto',
                 compile_blocks=False):
        super().__init__()
        self.norm1 = build_norm(norm_type, embed_dims, norm_eps)
        self.attn = Attention(embed_dims, num_heads, qkv_bias=qkv_bias, qk_normalization=qk_normalization,
                              norm_eps=norm_eps, attn_backend=attn_backend)
        self.ls1 = LayerScale(embed_dims, layer_scale_init)
        self.norm2 = build_norm(norm_type, embed_dims, norm_eps)
        self.mlp = Mlp(embed_dims, feedforward_channels)
        self.ls2 = LayerScale(embed_dims, layer_scale_init)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.compile_blocks = block_compile.check_compile_mode(compile_blocks)

    def residual_body(self, x: torch.Tensor, keep1: Optional[torch.Tensor] = None,
                      keep2: Optional[torch.Tensor] = None) -> torch.Tensor:
        """The block with the drop-path scales given (None: no drop path)."""
        y = self.ls1(self.attn(self.norm1(x)))
        x = x + (y if keep1 is None else y * keep1)
        y = self.ls2(self.mlp(self.norm2(x)))
        return x + (y if keep2 is None else y * keep2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        keep1 = keep2 = None
        p = getattr(self.drop_path, 'drop_prob', 0.)
        if self.training and p > 0:
            keep1, keep2 = drop_path_scale(x, p), drop_path_scale(x, p)
        return block_compile.run(Block.residual_body, self.compile_blocks, self, x, keep1, keep2)
