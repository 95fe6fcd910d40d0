"""``load_internvl_clip``: the released InternVL-C / InternVL-G weights, strictly, only the parts asked for.

The whole checkpoint is checked against the full model first (every key known, every shape right, a
bare InternViT refused naming the text tower), then a model of the requested parts is built on the
``meta`` device, allocated in the target dtype and filled one tensor at a time (safetensors shards and
memory-mapped pickles are read tensor by tensor), so the 14B is never held in float32 and a phase
holds only what it runs: ``lm_head`` and ``itm_head`` are never read.
"""
import time
from typing import Iterable, Optional

import torch
from mmengine.logging import print_log

from ..checkpoint.errors import CheckpointError
from ..checkpoint.internvl_clip import CLIP_FORMATS, check_clip_state, clip_config, convert_internvl_clip
from ..checkpoint.loader import fill_model, open_checkpoint
from ..common.dtypes import torch_dtype
from .internvl_clip import CONFIG_KEYS, InternVLCLIP, check_mode, check_parts

#: the parts each mode runs (text embeddings and image embeddings)
MODE_PARTS = {'InternVL-C': ('text', 'vision'), 'InternVL-G': ('text', 'vision', 'queries')}


def _resolve_dtype(dtype) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        return dtype
    try:
        return torch_dtype(dtype, allowed=('bf16', 'bfloat16', 'fp32', 'float32', 'fp16', 'float16'))
    except ValueError as e:
        raise CheckpointError(str(e)) from None


def load_internvl_clip(path, mode: str = 'InternVL-C', parts: Optional[Iterable[str]] = None, dtype='bf16',
                       config: Optional[dict] = None, attn_backend: str = 'auto', device='cpu') -> InternVLCLIP:
    """Build an :class:`~perception.models.internvl_clip.InternVLCLIP` from released weights.

    Args:
        path: the ``InternVL-14B-224px`` folder (``config.json``, ``model.safetensors.index.json`` and
            its shards), its index file, or the stage-1 ``internvl_c_13b_224px.pth`` (read weights-only).
        mode: 'InternVL-C' or 'InternVL-G': the default parts (C: text + vision; G: + queries).
        parts: a subset of ('text', 'vision', 'queries') to build instead, for phased runs: e.g. all
            text embeddings with ``parts=('text',)``, the model freed, then ``parts=('vision',)``.
        dtype: 'bf16' (default: the released weights' dtype), 'fp32' or 'fp16'.
        config: the architecture (the keys of ``CONFIG_KEYS``) instead of ``config.json`` / the shapes.
        attn_backend: the ViT's attention kernel ('auto', 'sdpa', 'math', 'xformers').
        device: where the model runs (filled on the CPU one tensor at a time, then moved there).
    Returns the model in eval mode, without gradients.
    """
    t0 = time.perf_counter()
    check_mode(mode)
    parts = check_parts(parts if parts is not None else MODE_PARTS[mode])
    dtype = _resolve_dtype(dtype)
    src = open_checkpoint(path)
    sd, unused, fmt = convert_internvl_clip(src.tensors, src.path)
    if config is not None:
        missing = [k for k in CONFIG_KEYS if k not in config]
        if missing:
            raise CheckpointError(f'config= lacks {missing} (needs {list(CONFIG_KEYS)})')
        cfg = dict(config)
    else:
        cfg = clip_config(sd, src.config, src.path)
    full = ('text', 'vision', 'queries') if 'query_tokens' in sd else ('text', 'vision')
    lacking = [p for p in parts if p not in full]
    if lacking:
        raise CheckpointError(f'{src.path}: {CLIP_FORMATS[fmt]} holds no InternVL-G queries (query_tokens, '
                              "clip_projector2, QLLaMA's cross-attention), which parts " f'{lacking} need: use '
                              "mode='InternVL-C' or the InternVL-14B-224px folder")
    with torch.device('meta'):
        whole = InternVLCLIP(cfg, full, attn_backend)
    check_clip_state({k: v.shape for k, v in whole.state_dict().items()}, sd, src.path, fmt)
    del whole
    with torch.device('meta'):
        model = InternVLCLIP(cfg, parts, attn_backend)
    wanted = {k: sd[k] for k in model.state_dict()}
    stored = sorted({str(t.dtype)[6:] for t in wanted.values() if t.dtype.is_floating_point and t.dtype != dtype})
    if stored:
        print_log(f'{src.path}: weights stored as {", ".join(stored)} are loaded as {str(dtype)[6:]}',
                  logger='current')
    fill_model(model, wanted, src.path, dtype=dtype)
    if str(device) != 'cpu':
        model.to(device)
    model.requires_grad_(False).eval()
    for group, keys in unused.items():
        print_log(f'{src.path}: {len(keys)} tensors of {group} not read (no embedding uses them)', logger='current')
    skipped = len(sd) - len(wanted)
    n = sum(p.numel() for p in model.parameters())
    print_log(f'loaded {src.path}: {CLIP_FORMATS[fmt]}; parts {parts} ({n / 1e6:.1f} M params in {str(dtype)[6:]}; '
              f'{skipped} tensors of other parts not read); {time.perf_counter() - t0:.1f} s', logger='current')
    return model
