"""Segmentation heads mmseg lacks: InternVL's linear probe."""
from typing import List

import torch
from mmseg.models.decode_heads.decode_head import BaseDecodeHead
from torch import nn
from ..registry import register


@register('MODELS', 'mmseg')
class LinearProbeHead(BaseDecodeHead):
    """BatchNorm on one backbone map, then the 1x1 ``conv_seg`` (InternVL's linear-probe head).

    Weight-compatible with ``decode_head.norm.*`` + ``decode_head.conv_seg.*`` of InternVL's released
    ADE20K linear-probe checkpoint. ``norm_cfg`` picks the norm (``SyncBN`` under DDP, ``BN``
    otherwise; eps 1e-5 as released); nothing but the norm runs before ``conv_seg``.
    """

    def __init__(self, norm_eps: float = 1e-5, **kwargs):
        kwargs.setdefault('channels', kwargs.get('in_channels'))
        super().__init__(**kwargs)
        if self.in_channels != self.channels:
            raise ValueError(f'LinearProbeHead: channels ({self.channels}) must equal in_channels '
                             f'({self.in_channels}): the 1x1 conv reads the normalised feature directly')
        norm_type = (self.norm_cfg or {}).get('type', 'BN')
        bn = nn.SyncBatchNorm if norm_type == 'SyncBN' and torch.cuda.is_available() \
            and torch.distributed.is_available() and torch.distributed.is_initialized() else nn.BatchNorm2d
        self.norm = bn(self.in_channels, eps=norm_eps)

    def forward(self, inputs: List[torch.Tensor]) -> torch.Tensor:
        x = self._transform_inputs(inputs)
        if isinstance(x, (list, tuple)):
            raise ValueError('LinearProbeHead reads one map: set in_index to an int')
        return self.cls_seg(self.norm(x))
