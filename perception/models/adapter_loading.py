"""``init_cfg=dict(type='Pretrained', ...)`` of :class:`~perception.models.adapter.InternViTAdapter`.

Two kinds of file, told apart by their keys, both loaded strictly through :mod:`perception.checkpoint`
(every released InternViT layout is converted there):

* an InternViT release (formats A, B, E, a segmentor's ``backbone.*``): the ViT part (patch embedding,
  position embedding, blocks); its class token is skipped (the adapter runs without it) and the adapter
  keeps its initialisation;
* a whole adapter (a fork segmentor read with ``prefix='backbone.'``, or this project's): every key.

A patch kernel of another size than 16 is resampled only when the model was asked for ``patch_size=16``
(announced), with the fork's operation: plain bicubic interpolation of the kernel
(``intern_vit_6b.py: init_weights``), not the pseudo-inverse ``load_backbone`` uses for ``InternViT``.
"""
from typing import Optional

import torch
import torch.nn.functional as F
from mmengine.logging import print_log
from torch import nn

from ..checkpoint.errors import CheckpointError
from ..checkpoint.io import LazyTensor
from ..checkpoint.loader import describe_source, fill_model, log_unused, read_converted

#: top-level names of the adapter's own parameters (the rest is the ViT)
ADAPTER_PREFIXES = ('spm.', 'interactions.', 'level_embed', 'up.', 'norm1.', 'norm2.', 'norm3.', 'norm4.')
PATCH_KEY = 'patch_embed.proj.weight'


class ViTPart(nn.Module):
    """The adapter's ViT parameters under their own names (shared, not copied): a loading target."""

    def __init__(self, adapter: nn.Module):
        super().__init__()
        self.patch_embed = adapter.patch_embed
        self.pos_embed = adapter.pos_embed
        self.blocks = adapter.blocks


def resample_kernel_bicubic(w: torch.Tensor, size: int) -> torch.Tensor:
    """InternVL-MMDetSeg's patch-kernel resize: ``F.interpolate(w, (size, size), bicubic, align_corners=False)``
    (computed in float32)."""
    return F.interpolate(w.float(), size=(size, size), mode='bicubic', align_corners=False)


def load_adapter_pretrained(model, path, prefix: Optional[str] = None):
    """Strictly load ``path`` into ``model`` (an ``InternViTAdapter``); see the module docstring."""
    src, sd, unused, fmt = read_converted(path, prefix)
    if 'cls_token' in sd:
        unused['cls_token (the adapter runs the ViT without it)'] = ['cls_token']
        del sd['cls_token']
    whole = any(k.startswith(ADAPTER_PREFIXES) for k in sd)
    new = model.patch_embed.proj.weight.shape[-1]
    lt = sd.get(PATCH_KEY)
    if lt is not None and len(lt.shape) == 4 and lt.shape[-1] == lt.shape[-2] != new:
        old = lt.shape[-1]
        if not model.patch_size_asked:
            raise CheckpointError(f'{path}: the patch-embedding kernel is {old}x{old}, InternViTAdapter runs '
                                  f'{new}-pixel patches: pass patch_size={new} to resample the kernel (bicubic, as '
                                  'InternVL-MMDetSeg does)')
        print_log(f'{path}: resampling the {old}x{old} patch-embedding kernel to {new}x{new} (bicubic, as '
                  f'InternVL-MMDetSeg\'s adapter): patch_size={new} was asked for; the ViT\'s outputs differ from the '
                  f'released {old}-pixel model', logger='current', level=30)
        sd[PATCH_KEY] = LazyTensor((*lt.shape[:2], new, new), torch.float32,
                                   lambda: resample_kernel_bicubic(lt.load(), new), lt.source, lt.release)
    pe = sd.get('pos_embed')
    stored = None if pe is None or len(pe.shape) != 3 else pe.shape[1] - 1
    fill_model(model if whole else ViTPart(model), sd, src.path, grid_of=lambda n: model.pretrain_grid,
               patch_resize='refuse')
    model._pos_cache.clear()
    if stored is not None and stored != model.pos_embed.shape[1] - 1:
        side = round(stored ** 0.5)
        print_log(f'{path}: the position embedding stored at {stored} positions was resampled to the model\'s '
                  f'{model.pretrain_grid[0]}x{model.pretrain_grid[1]} grid; img_size={side * new} keeps the stored '
                  f'{side}x{side} grid as it is', logger='current', level=30 if whole else 20)
    log_unused(unused, src.path)
    what = 'ViT and adapter' if whole else 'the ViT (the adapter keeps its initialisation)'
    print_log(f'loaded {src.path} into InternViTAdapter: {describe_source(src, fmt)}; {what}; attention backend '
              f'{model.resolved_attn_backend()!r} (requested {model.attn_backend!r})', logger='current')
    return model
