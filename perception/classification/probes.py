"""ImageNet linear-probe necks and head for a frozen InternViT inside mmpretrain's ImageClassifier.

* ``ClsPatchConcat`` (neck): concat(cls token, mean patch token) of the last block -> ``[B, 2C]``.
* ``AttentionPoolingNeck``: a cross-attention block whose query is the mean of all tokens (cls
  included): dim C, heads, qkv bias, LayerNorm eps 1e-5, MLP -> ``[B, C]``.
* ``BNLinearClsHead``: BatchNorm1d (eps 1e-6) then Linear; ``head.norm.*`` / ``head.fc.*`` hold
  what InternVL's ``intern_vit_6b_224px_head.pth`` (format D) calls ``norm.*`` / ``head.*``.
"""
from typing import Sequence, Tuple

import torch
import torch.nn.functional as F
from mmengine.model import BaseModule
from mmpretrain.models.heads import ClsHead
from torch import nn

from ..layers.norm import LayerNormFp32
from ..registry import register


def _tokens_from_backbone(inputs) -> Tuple[torch.Tensor, torch.Tensor]:
    """(patch tokens [B, N, C], cls token [B, C]) from InternViT(output_cls_token=True) outputs."""
    last = inputs[-1]
    if not isinstance(last, (list, tuple)) or len(last) != 2:
        raise ValueError('the probe needs the cls token: set the backbone output_cls_token=True')
    fmap, cls = last
    return fmap.flatten(2).transpose(1, 2), cls


@register('MODELS', 'mmpretrain')
class ClsPatchConcat(BaseModule):
    """``concat(cls, mean(patch tokens))`` of the backbone's last output (InternVL's cls_patch_concat)."""

    def forward(self, inputs):
        patches, cls = _tokens_from_backbone(inputs)
        return (torch.cat([cls, patches.mean(1)], dim=-1), )


@register('MODELS', 'mmpretrain')
class AttentionPoolingNeck(BaseModule):
    """Attention pooling: ``q = mean(all tokens)``; ``x = q + attn(norm1_q(q), norm1_k(x), norm1_v(x))``;
    ``x = x + mlp(norm2(x))``."""

    def __init__(self, embed_dims: int = 3200, num_heads: int = 25, mlp_ratio: float = 4.0,
                 norm_eps: float = 1e-5, init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        C = embed_dims
        self.num_heads = num_heads
        self.norm1_q = LayerNormFp32(C, eps=norm_eps)
        self.norm1_k = LayerNormFp32(C, eps=norm_eps)
        self.norm1_v = LayerNormFp32(C, eps=norm_eps)
        self.q = nn.Linear(C, C, bias=True)
        self.k = nn.Linear(C, C, bias=True)
        self.v = nn.Linear(C, C, bias=True)
        self.proj = nn.Linear(C, C)
        self.norm2 = LayerNormFp32(C, eps=norm_eps)
        hidden = int(C * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(C, hidden), nn.GELU(), nn.Linear(hidden, C))

    def forward(self, inputs):
        patches, cls = _tokens_from_backbone(inputs)
        x = torch.cat([cls[:, None], patches], dim=1)
        B, N, C = x.shape
        H, D = self.num_heads, C // self.num_heads
        q_in = x.mean(1, keepdim=True)
        q = self.q(self.norm1_q(q_in)).view(B, 1, H, D).transpose(1, 2)
        k = self.k(self.norm1_k(x)).view(B, N, H, D).transpose(1, 2)
        v = self.v(self.norm1_v(x)).view(B, N, H, D).transpose(1, 2)
        o = F.scaled_dot_product_attention(q, k.to(q.dtype), v.to(q.dtype)).transpose(1, 2).reshape(B, 1, C)
        y = q_in + self.proj(o)
        y = y + self.mlp(self.norm2(y))
        return (y[:, 0], )


@register('MODELS', 'mmpretrain')
class BNLinearClsHead(ClsHead):
    """BatchNorm1d (eps 1e-6, no trainable-free tricks) then a Linear classifier."""

    def __init__(self, num_classes: int, in_channels: int, bn_eps: float = 1e-6, **kwargs):
        kwargs.setdefault('init_cfg', dict(type='TruncNormal', layer='Linear', std=0.01))
        super().__init__(**kwargs)
        self.num_classes = num_classes
        self.in_channels = in_channels
        self.norm = nn.BatchNorm1d(in_channels, eps=bn_eps)
        self.fc = nn.Linear(in_channels, num_classes)

    def pre_logits(self, feats: Sequence[torch.Tensor]) -> torch.Tensor:
        return feats[-1]

    def forward(self, feats) -> torch.Tensor:
        x = self.pre_logits(feats)
        if x.shape[-1] != self.in_channels:
            raise ValueError(f'BNLinearClsHead(in_channels={self.in_channels}) got features of width {x.shape[-1]}')
        return self.fc(self.norm(x.float()))
