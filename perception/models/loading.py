"""Build the InternViT a checkpoint describes and load it strictly: model building lives with the
model; :mod:`perception.checkpoint` reads, detects, converts and checks state dicts and imports nothing
from here."""
import time

import torch
from mmengine.logging import print_log

from ..checkpoint.errors import CheckpointError
from ..common.dtypes import torch_dtype
from ..checkpoint.loader import (describe_source, log_unused, arch_for_source, default_dtype, fill_model,
                                 read_backbone_state)
from .internvit import InternViT


def load_backbone(path, config=None, **overrides):
    """Build the InternViT a checkpoint describes and load it strictly.

    Args:
        path: a ``.pth``/``.bin``/``.safetensors`` file, a Hugging Face model directory, its
            ``*.index.json``, or a DeepSpeed output directory.
        config: for files that carry no config: a preset name, an arch dict, an HF ``config.json``
            path or dict. Without it the architecture comes from ``config.json`` / the file's metadata /
            the tensor shapes (known presets).
        overrides: ``InternViT`` arguments (``out_indices``, ``attn_backend``, ``frozen``, ...), arch
            keys (e.g. ``img_size`` to set the position-embedding grid), and ``dtype`` ('bf16', 'fp32',
            ... or a ``torch.dtype``; default bf16 for 6B-width models, else fp32).
    """
    t0 = time.perf_counter()
    dtype = overrides.pop('dtype', None)
    if isinstance(dtype, str):
        try:
            dtype = torch_dtype(dtype)
        except ValueError as e:
            raise CheckpointError(str(e)) from None
    elif dtype is not None and not isinstance(dtype, torch.dtype):
        raise CheckpointError(f'dtype must be a name or a torch.dtype, got {dtype!r}')
    src, sd, unused, fmt = read_backbone_state(path)
    arch = arch_for_source(src, sd, config, overrides)
    kwargs = {k: v for k, v in overrides.items() if k not in arch}
    dtype = dtype or default_dtype(arch)
    with torch.device('meta'):
        model = InternViT(arch, **kwargs)
    grid = model.pretrain_grid
    # a patch size the user asked for (config= / patch_size=) resamples, announced; one that only the
    # file's own config.json / metadata says, while its kernel disagrees, is refused
    asked = config is not None or 'patch_size' in overrides
    fill_model(model, sd, src.path, dtype=dtype, grid_of=lambda n: grid,
               patch_resize='announce' if asked else 'refuse')
    model._is_init = True
    if model.frozen:
        model.freeze()
    log_unused(unused, src.path)
    print_log(f'loaded {src.path}: {describe_source(src, fmt)}; {arch["num_layers"]} layers x {arch["embed_dims"]}, '
              f'{sum(p.numel() for p in model.parameters()) / 1e6:.2f} M params in {str(dtype)[6:]}; '
              f'attention backend {model.resolved_attn_backend()!r} (requested {model.attn_backend!r}); '
              f'{time.perf_counter() - t0:.1f} s', logger='current')
    return model
