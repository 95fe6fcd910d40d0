"""Plain-PyTorch building blocks of InternViT (no OpenMMLab imports here)."""
from .attention import ATTN_BACKENDS, Attention, resolve_attn_backend
from .block import Block
from .drop_path import DropPath
from .layer_scale import LayerScale
from .mlp import Mlp
from .norm import LayerNorm2d, LayerNormFp32, RMSNorm, build_norm
from .patch_embed import PatchEmbed
from .pos_embed import resample_abs_pos_embed

__all__ = [
    'ATTN_BACKENDS', 'Attention', 'resolve_attn_backend', 'Block', 'DropPath', 'LayerScale', 'Mlp',
    'LayerNorm2d', 'LayerNormFp32', 'RMSNorm', 'build_norm', 'PatchEmbed', 'resample_abs_pos_embed'
]
