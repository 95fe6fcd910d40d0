"""Normalisation layers; all of them compute in float32 whatever the input dtype."""
import torch
import torch.nn.functional as F

from .autocast import autocast_off
from torch import nn


class RMSNorm(nn.Module):
    """InternViT's RMSNorm: ``weight * (x * rsqrt(mean(x^2) + eps)).to(x.dtype)``, weight only.

    The statistics are computed in float32; the normalised tensor is cast back to the
    input dtype before the weight multiplies it (the released model's order).
    """

    def __init__(self, embed_dims: int, eps: float = 1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(embed_dims))
        self.eps = eps

    def reset_parameters(self):
        nn.init.ones_(self.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xf = x.float()
        xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * xf.to(x.dtype)

    def extra_repr(self) -> str:
        return f'{self.weight.shape[0]}, eps={self.eps}'


class LayerNormFp32(nn.LayerNorm):
    """LayerNorm over the last dim computed in float32 (same parameters as ``nn.LayerNorm``)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = None if self.weight is None else self.weight.float()
        b = None if self.bias is None else self.bias.float()
        with autocast_off(x.device.type):
            return F.layer_norm(x.float(), self.normalized_shape, w, b, self.eps).to(x.dtype)


class LayerNorm2d(nn.LayerNorm):
    """Channels-first LayerNorm for ``[B, C, H, W]`` maps, computed in float32."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = None if self.weight is None else self.weight.float()
        b = None if self.bias is None else self.bias.float()
        with autocast_off(x.device.type):
            y = F.layer_norm(x.float().permute(0, 2, 3, 1), self.normalized_shape, w, b, self.eps)
        return y.permute(0, 3, 1, 2).to(x.dtype)


def build_norm(norm_type: str, embed_dims: int, eps: float) -> nn.Module:
    if norm_type == 'rms_norm':
        return RMSNorm(embed_dims, eps=eps)
    if norm_type == 'layer_norm':
        return LayerNormFp32(embed_dims, eps=eps)
    raise ValueError(f"norm_type must be 'rms_norm' or 'layer_norm', got {norm_type!r}")
