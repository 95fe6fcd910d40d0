"""Convert any released InternViT checkpoint to this project's safetensors layout, and summarise one."""
import json
from collections import Counter
from pathlib import Path
from typing import Optional, Union

import torch
from mmengine.logging import print_log

from ..common.dtypes import torch_dtype
from ..layers.vision_transformer import ARCH_PRESETS
from .errors import CheckpointError
from .formats import FORMATS, convert_to_internvit, detect_format
from .io import write_safetensors
from .loader import (describe_source, log_unused, progress, arch_for_source, check_compatible,
                     open_checkpoint, read_backbone_state)

FORMAT_TAG = 'perception-internvit'


def _expected_shapes(arch: dict):
    from ..layers.vision_transformer import InternVisionTransformer  # the registered InternViT's parameters
    with torch.device('meta'):
        m = InternVisionTransformer(arch)
    return {k: v.shape for k, v in m.state_dict().items()}


def convert_checkpoint(src: Union[str, Path], dst: Union[str, Path], config=None,
                       dtype: Optional[Union[str, torch.dtype]] = None, overwrite: bool = False) -> dict:
    """Write ``src`` (any supported format) as one safetensors file in this project's key layout.

    The architecture is stored in the file's metadata, so :func:`load_backbone` needs no config for
    it. ``dtype`` casts floating tensors ('bf16', 'fp16', 'fp32'; default: keep). The write is atomic
    (a temporary file renamed at the end) and streams one tensor at a time. An existing ``dst`` is
    replaced only with ``overwrite=True``; ``dst`` may never be (inside) ``src``. Returns the summary.
    """
    s, d = Path(src).resolve(), Path(dst).resolve()
    if d == s or s in d.parents:
        raise CheckpointError(f'DST {dst} is the source {src} or inside it: write the conversion elsewhere')
    if d.is_dir():
        raise CheckpointError(f'DST {dst} is a folder: name the .safetensors file to write')
    if d.exists() and not overwrite:
        raise CheckpointError(f'DST {dst} exists: pass --force (overwrite=True) to replace it')
    if isinstance(dtype, str):
        try:
            dtype = torch_dtype(dtype)
        except ValueError as e:
            raise CheckpointError(str(e)) from None
    source, sd, unused, fmt = read_backbone_state(src)
    arch = arch_for_source(source, sd, config)
    check_compatible(_expected_shapes(arch), sd, source.path)  # strict before writing anything
    log_unused(unused, source.path)
    meta = {'format': FORMAT_TAG, 'arch': json.dumps(arch), 'source': str(src), 'source_format': fmt}
    write_safetensors(dst, sd, metadata=meta, dtype=dtype, progress=lambda names: progress(names, f'converting {Path(src).name}', len(names)))
    print_log(f'wrote {dst} from {source.path} ({describe_source(source, fmt)}), {len(sd)} tensors', logger='current')
    return checkpoint_info(dst)


def _match_preset(arch: dict) -> Optional[str]:
    for name, p in ARCH_PRESETS.items():
        if all(p[k] == arch.get(k) for k in p if k not in ('layer_scale_init',)):
            return name
    return None


def checkpoint_info(path: Union[str, Path], config=None) -> dict:
    """Summary of a checkpoint without building a model: format, preset, parameters, dtypes."""
    source = open_checkpoint(path)
    fmt = detect_format(source.tensors)
    info = {'path': str(path), 'format': fmt, 'format_name': FORMATS.get(fmt, fmt), 'wrapper': source.wrapper,
            'files': source.files, 'num_tensors': len(source.tensors)}
    total = Counter()
    for t in source.tensors.values():
        total[str(t.dtype).replace('torch.', '')] += t.numel()
    info['dtypes'] = dict(total)
    info['num_params_all'] = sum(total.values())
    if fmt == 'imagenet_head':
        info['kind'] = 'classification head'
        return info
    sd, unused, _ = convert_to_internvit(source.tensors, fmt)  # the files are already open
    info['kind'] = 'backbone'
    info['num_params'] = sum(t.numel() for t in sd.values())
    info['unused'] = {g: len(k) for g, k in unused.items()}
    try:
        arch = arch_for_source(source, sd, config)
        info['arch'] = arch
        info['preset'] = _match_preset(arch)
    except (CheckpointError, ValueError) as e:
        info['arch'] = None
        info['preset'] = None
        info['arch_error'] = str(e)
    if source.metadata:
        info['metadata'] = {k: v for k, v in source.metadata.items() if k != 'arch'}
    return info


def format_info(info: dict) -> str:
    lines = [f"{info['path']}",
             f"  format      {info['format_name']}" + (f" (under '{info['wrapper']}')" if info['wrapper'] else ''),
             f"  files       {len(info['files'])}: " + ', '.join(Path(f).name for f in info['files'][:4])
             + (' ...' if len(info['files']) > 4 else '')]
    if info.get('kind') == 'backbone':
        lines.append(f"  preset      {info.get('preset') or 'none (custom architecture)'}")
        if info.get('arch'):
            a = info['arch']
            lines.append(f"  arch        {a['num_layers']} layers x {a['embed_dims']}, {a['num_heads']} heads, "
                         f"MLP {a['feedforward_channels']}, {a['norm_type']}, img {a['img_size']}, patch "
                         f"{a['patch_size']}")
        else:
            lines.append(f"  arch        unknown: {info.get('arch_error')}")
        lines.append(f"  parameters  {info['num_params'] / 1e6:.2f} M (backbone)")
        for g, n in info.get('unused', {}).items():
            lines.append(f"  unused      {n} tensors of {g}")
    else:
        lines.append(f"  kind        {info.get('kind')}")
    lines.append('  dtypes      ' + ', '.join(f'{k}: {v / 1e6:.2f} M' for k, v in info['dtypes'].items()))
    return '\n'.join(lines)
