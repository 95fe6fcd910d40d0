import torch
from torch import nn


class LayerScale(nn.Module):
    """Per-channel residual-branch scale ``x * gamma`` (parameter named ``gamma`` as released)."""

    def __init__(self, embed_dims: int, layer_scale_init: float = 0.1):
        super().__init__()
        self.layer_scale_init = layer_scale_init
        self.gamma = nn.Parameter(torch.full((embed_dims,), float(layer_scale_init)))

    def reset_parameters(self):
        nn.init.constant_(self.gamma, self.layer_scale_init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma

    def extra_repr(self) -> str:
        return f'{self.gamma.shape[0]}, layer_scale_init={self.layer_scale_init}'
