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
import re
from typing import Dict, Optional, Tuple

import torch
import torch.nn.functional as F
from mmengine.logging import print_log
from torch import nn

from ..checkpoint.errors import CheckpointError, list_keys
from ..checkpoint.io import LazyTensor
from ..checkpoint.loader import describe_source, fill_model, log_unused, read_converted

#: top-level names of the adapter's own parameters (the rest is the ViT)
ADAPTER_PREFIXES = ('spm.', 'interactions.', 'level_embed', 'up.', 'norm1.', 'norm2.', 'norm3.', 'norm4.')
#: the ViT's (held in ``weights_dtype`` when one is set)
VIT_PREFIXES = ('patch_embed.', 'pos_embed', 'blocks.')
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


def _width_depth(shapes: dict) -> Tuple[Optional[int], int]:
    """(embedding width, number of ViT blocks) of a ``{key: shape}`` in the adapter's names."""
    width = next((int(shapes[k][-1]) for k in ('pos_embed', 'level_embed') if k in shapes and len(shapes[k])), None)
    if width is None and PATCH_KEY in shapes:
        width = int(shapes[PATCH_KEY][0])
    return width, len({int(m.group(1)) for k in shapes for m in [re.match(r'^blocks\.(\d+)\.', k)] if m})


def check_adapter_fit(target: nn.Module, sd: Dict[str, LazyTensor], where: str, key_prefix: str = ''):
    """Refuse, in one line, a state dict that does not fit ``target`` key for key: the first mismatching key in
    the model's order with both shapes, the widths and depths when they differ, missing and unexpected keys
    (named with ``key_prefix``, as the file names them). A position embedding of another grid and a square patch
    kernel of another size are not mismatches: the loader resamples them."""
    model = {k: tuple(v.shape) for k, v in target.state_dict().items()}
    ckpt = {k: tuple(v.shape) for k, v in sd.items()}

    def fits(k):
        ms, cs = model[k], ckpt[k]
        return ms == cs or (k == 'pos_embed' and len(cs) == 3 and cs[-1] == ms[-1]) or \
            (k == PATCH_KEY and len(cs) == 4 and cs[:2] == ms[:2] and cs[2] == cs[3])
    bad = [k for k in model if k in ckpt and not fits(k)]
    missing = [key_prefix + k for k in model if k not in ckpt]
    unexpected = [key_prefix + k for k in ckpt if k not in model]
    if not (bad or missing or unexpected):
        return
    parts = []
    if bad:
        k = bad[0]
        parts.append(f'first mismatching key {key_prefix}{k}: checkpoint {ckpt[k]} vs model {model[k]}'
                     + (f' ({len(bad)} keys differ in shape)' if len(bad) > 1 else ''))
    (cw, cd), (mw, md) = _width_depth(ckpt), _width_depth(model)
    if (cw, cd) != (mw, md):
        parts.append(f'the checkpoint\'s ViT is {cw} wide with {cd} blocks, the model\'s {mw} wide with {md}')
    if missing:
        parts.append(f'missing keys: {list_keys(missing, 4)}')
    if unexpected:
        parts.append(f'unexpected keys: {list_keys(unexpected, 4)}')
    raise CheckpointError(f'{where} does not fit InternViTAdapter: ' + '; '.join(parts))


def load_adapter_pretrained(model, path, prefix: Optional[str] = None):
    """Strictly load ``path`` into ``model`` (an ``InternViTAdapter``); see the module docstring."""
    src, sd, unused, fmt = read_converted(path, prefix)
    return load_adapter_state(model, sd, path, src=src, fmt=fmt, unused=unused, key_prefix=prefix or '')


def load_adapter_state(model, sd: Dict[str, LazyTensor], path, src=None, fmt: str = '', unused=None,
                       key_prefix: str = ''):
    """Strictly load ``sd`` (InternViT names: a release's ViT, or a whole adapter) into ``model``; ``path``,
    ``key_prefix``: how the messages name the file and its keys."""
    unused = dict(unused or {})
    if 'cls_token' in sd:
        unused['cls_token (the adapter runs the ViT without it)'] = ['cls_token']
        del sd['cls_token']
    whole = any(k.startswith(ADAPTER_PREFIXES) for k in sd)
    target = model if whole else ViTPart(model)
    check_adapter_fit(target, sd, str(path), key_prefix)
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
    held = model.pos_embed.dtype  # fp32, or the weights_dtype of a frozen ViT
    stored = sorted({str(t.dtype).replace('torch.', '') for k, t in sd.items()
                     if k.startswith(VIT_PREFIXES) and t.dtype != held})
    if held != torch.float32 and stored:
        print_log(f'{path}: ViT weights stored in {", ".join(stored)} are rounded to the model\'s '
                  f'{str(held).replace("torch.", "")} (weights_dtype)', logger='current', level=30)
    pe = sd.get('pos_embed')
    stored_grid = None if pe is None or len(pe.shape) != 3 else pe.shape[1] - 1
    fill_model(target, sd, str(path), grid_of=lambda n: model.pretrain_grid, patch_resize='refuse')
    model._pos_cache.clear()
    if stored_grid is not None and stored_grid != model.pos_embed.shape[1] - 1:
        side = round(stored_grid ** 0.5)
        print_log(f'{path}: the position embedding stored at {stored_grid} positions was resampled to the model\'s '
                  f'{model.pretrain_grid[0]}x{model.pretrain_grid[1]} grid; img_size={side * new} keeps the stored '
                  f'{side}x{side} grid as it is', logger='current', level=30 if whole else 20)
    log_unused(unused, str(path))
    what = 'ViT and adapter' if whole else 'the ViT (the adapter keeps its initialisation)'
    how = describe_source(src, fmt) if src is not None else f'{len(sd)} tensors'
    print_log(f'loaded {path} into InternViTAdapter: {how}; {what}; attention backend '
              f'{model.resolved_attn_backend()!r} (requested {model.attn_backend!r})', logger='current')
    return model
