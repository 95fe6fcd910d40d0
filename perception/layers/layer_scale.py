import torch
from torch import nn


class LayerScale(nn.Module):
    """Per-channel residual-branch scale ``x * gamma`` (parameter named ``gamma`` as released)."""

    def __init__(self, dim: int, init_values: float = 0.1):
        super().__init__()
        self.init_values = init_values
        self.gamma = nn.Parameter(torch.full((dim,), float(init_values)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma

    def extra_repr(self) -> str:
        return f'{self.gamma.shape[0]}, init_values={self.init_values}'
