import torch
from torch import nn


def drop_path_scale(x: torch.Tensor, drop_prob: float) -> torch.Tensor:
    """Per-sample stochastic-depth scale ``[B, 1, ...]``: 0 for dropped samples, ``1 / (1 - p)`` else."""
    keep = 1. - drop_prob
    return x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep).div_(keep)


def drop_path(x: torch.Tensor, drop_prob: float = 0., training: bool = False) -> torch.Tensor:
    """Stochastic depth per sample; surviving samples are scaled by ``1 / (1 - p)``."""
    if drop_prob == 0. or not training:
        return x
    return x * drop_path_scale(x, drop_prob)


class DropPath(nn.Module):

    def __init__(self, drop_prob: float = 0.):
        super().__init__()
        self.drop_prob = float(drop_prob)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return drop_path(x, self.drop_prob, self.training)

    def extra_repr(self) -> str:
        return f'drop_prob={self.drop_prob:.3f}'
