"""Turn an FSDP sharded checkpoint (``iter_N.pth/rank*.pth``) into one ordinary segmentor checkpoint.

The model's parameter shapes come from the config stored in the checkpoint (or ``config``); the
segmentor is built on the ``meta`` device, so nothing but the weights is allocated.
"""
from pathlib import Path
from typing import Optional

import torch
from mmengine.logging import print_log

from .checkpoint.errors import CheckpointError
from .common.files import atomic_write
from .checkpoint.sharded import assemble_state_dict, read_sharded_checkpoint
from .config import build_model


def consolidate_checkpoint(src, out, config: Optional[str] = None) -> dict:
    """Read every rank's shard of ``src`` (a sharded checkpoint folder or a work dir), assemble whole
    tensors and write ``out`` (``{'meta': ..., 'state_dict': ...}``, weights-only loadable) atomically.
    Returns the written checkpoint's meta. Nothing is written when a rank file is missing or broken."""
    out = Path(out)
    if out.is_dir():
        raise CheckpointError(f'{out} is a directory: give the output file name (e.g. {out / "consolidated.pth"})')
    per_rank, folder = read_sharded_checkpoint(src)
    if out.resolve() == folder.resolve() or folder.resolve() in out.resolve().parents:
        raise CheckpointError(f'{out}: the output must not be inside the sharded checkpoint {folder}')
    meta = dict(per_rank[0].get('meta') or {})
    if config is None and not meta.get('cfg'):
        raise CheckpointError(f'{folder}: the checkpoint stores no config; pass the training config (--config)')
    try:
        if config is None:
            from mmengine.config import Config
            config = Config.fromstring(meta['cfg'], '.py')
        model = build_model(config, device='meta')
    except Exception as e:  # an import in the stored config's custom_imports, an unknown type, ...
        where = config if isinstance(config, (str, Path)) else f'the config stored in {folder / "rank0.pth"}'
        raise CheckpointError(f'cannot build the model from {where}: {type(e).__name__}: '
                              f'{str(e).strip().splitlines()[-1] if str(e).strip() else ""} '
                              '(pass the training config with --config)') from e
    sd = model.state_dict()
    shapes = {k: v.shape for k, v in sd.items()}
    state = assemble_state_dict(per_rank, shapes, [n for n, _ in model.named_parameters()], str(folder))
    meta['consolidated_from'] = dict(path=str(folder), world_size=len(per_rank))
    with atomic_write(out) as tmp:
        torch.save({'meta': meta, 'state_dict': state}, tmp)
    n = sum(t.numel() for t in state.values())
    print_log(f'consolidated {folder} ({len(per_rank)} ranks, iteration {meta.get("iter")}): '
              f'{len(state)} tensors, {n / 1e6:.2f} M values -> {out}', logger='current')
    return meta
