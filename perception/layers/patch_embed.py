import torch
from torch import nn


class PatchEmbed(nn.Module):
    """Non-overlapping ``patch_size`` convolution; returns tokens ``[B, h*w, C]`` and the grid."""

    def __init__(self, patch_size: int = 14, in_chans: int = 3, embed_dims: int = 3200):
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Conv2d(in_chans, embed_dims, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor):
        if x.ndim != 4 or x.shape[1] != self.proj.in_channels:
            raise ValueError(f'expected an image batch [B, {self.proj.in_channels}, H, W], '
                             f'got shape {tuple(x.shape)}')
        h, w = x.shape[-2:]
        p = self.patch_size
        if h % p or w % p:
            raise ValueError(
                f'input size {h}x{w} is not a multiple of the patch size {p}: resize or pad the image '
                f'to a multiple of {p} (e.g. {max(p, round(h / p) * p)}x{max(p, round(w / p) * p)})')
        x = self.proj(x)
        grid = x.shape[-2:]  # ints in eager, symbolic sizes under torch.export
        return x.flatten(2).transpose(1, 2), (grid[0], grid[1])
