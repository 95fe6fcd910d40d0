from typing import Tuple

import torch
import torch.nn.functional as F

from .autocast import autocast_off


def resample_abs_pos_embed(pos_embed: torch.Tensor, new_grid: Tuple[int, int],
                           old_grid: Tuple[int, int] = None, num_prefix_tokens: int = 1) -> torch.Tensor:
    """Resample a ``[1, prefix + h*w, C]`` absolute position embedding to ``new_grid``.

    Bicubic, ``align_corners=False``, no antialias, computed in float32 (the InternViT release's
    operation; timm's resampler antialiases by default, which is a different result). The prefix
    (cls) entries are kept. Returns float32, or the input unchanged when the grid already matches.
    """
    n = pos_embed.shape[1] - num_prefix_tokens
    if old_grid is None:
        side = int(round(n ** 0.5))
        if side * side != n:
            raise ValueError(f'pos_embed has {n} patch positions, not a square grid: pass old_grid')
        old_grid = (side, side)
    if old_grid[0] * old_grid[1] != n:
        raise ValueError(f'old_grid {old_grid} does not match {n} patch positions')
    new_grid = (int(new_grid[0]), int(new_grid[1]))
    if tuple(old_grid) == new_grid:
        return pos_embed
    return interpolate_pos_embed(pos_embed, new_grid, old_grid, num_prefix_tokens)


def interpolate_pos_embed(pos_embed: torch.Tensor, new_grid, old_grid: Tuple[int, int],
                          num_prefix_tokens: int = 1) -> torch.Tensor:
    """The resampling itself, with no branch on the sizes: ``new_grid`` may be symbolic (traced by
    ``torch.export`` with dynamic H, W). At ``new_grid == old_grid`` bicubic with
    ``align_corners=False`` is the exact identity. Returns float32."""
    prefix, grid = pos_embed[:, :num_prefix_tokens], pos_embed[:, num_prefix_tokens:]
    c = pos_embed.shape[-1]
    grid = grid.float().reshape(1, old_grid[0], old_grid[1], c).permute(0, 3, 1, 2)
    with autocast_off(pos_embed.device.type):
        grid = F.interpolate(grid, size=(new_grid[0], new_grid[1]), mode='bicubic', align_corners=False,
                             antialias=False)
    grid = grid.permute(0, 2, 3, 1).reshape(1, new_grid[0] * new_grid[1], c)
    return torch.cat([prefix.float(), grid], dim=1)
