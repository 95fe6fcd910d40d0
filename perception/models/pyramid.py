"""The 4-level feature pyramid InternVL puts between the ViT and UperNet."""
from typing import Optional, Sequence

import torch
from mmengine.model import BaseModule
from torch import nn

from ..layers.norm import LayerNorm2d
from ..registry import register


@register('MODELS', 'mmseg', 'mmpretrain')
class InternViTPyramid(BaseModule):
    """4x up, 2x up, identity and 0.5x down of the 1/patch grid (strides 3.5, 7, 14, 28 for p=14).

    Weight-compatible with ``backbone.up1..up4`` of InternVL's released ADE20K checkpoints:
    ``up1 = [ConvT(2, 2), LayerNorm2d (fp32, eps 1e-6), GELU, ConvT(2, 2)]``, ``up2 = [ConvT(2, 2)]``,
    ``up3 = Identity``, ``up4 = MaxPool2d(2)``.

    Args:
        in_channels: backbone width (3200 for the 6B).
        num_levels_in: how many backbone maps feed it: 4 (one per level, InternVL's UperNet) or 1
            (the same map for all levels).
        norm_eps: eps of the channels-first LayerNorm.
    """

    def __init__(self, in_channels: int = 3200, num_levels_in: int = 4, norm_eps: float = 1e-6,
                 init_cfg: Optional[dict] = None):
        super().__init__(init_cfg=init_cfg)
        if num_levels_in not in (1, 4):
            raise ValueError(f'num_levels_in must be 1 or 4, got {num_levels_in}')
        C = in_channels
        self.in_channels = C
        self.num_levels_in = num_levels_in
        self.up1 = nn.Sequential(nn.ConvTranspose2d(C, C, 2, 2), LayerNorm2d(C, eps=norm_eps), nn.GELU(),
                                 nn.ConvTranspose2d(C, C, 2, 2))
        self.up2 = nn.Sequential(nn.ConvTranspose2d(C, C, 2, 2))
        self.up3 = nn.Identity()
        self.up4 = nn.MaxPool2d(kernel_size=2, stride=2)

    def forward(self, inputs: Sequence[torch.Tensor]):
        if isinstance(inputs, torch.Tensor):
            inputs = [inputs]
        inputs = list(inputs)
        if len(inputs) != self.num_levels_in:
            raise ValueError(f'InternViTPyramid expects {self.num_levels_in} feature map(s), got '
                             f'{len(inputs)}: set the backbone out_indices to {self.num_levels_in} layers')
        if self.num_levels_in == 1:
            inputs = inputs * 4
        for f in inputs:
            if f.ndim != 4 or f.shape[1] != self.in_channels:
                raise ValueError(f'InternViTPyramid(in_channels={self.in_channels}) got a map of shape '
                                 f'{tuple(f.shape)}')
        ops = (self.up1, self.up2, self.up3, self.up4)
        return tuple(op(f) for op, f in zip(ops, inputs))
