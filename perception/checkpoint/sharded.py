"""Read FSDP sharded ('local') checkpoints that mmengine's FSDPStrategy writes, in one process.

Layout: ``iter_N.pth/`` is a folder with one ``rank{r}.pth`` per rank. With ``use_orig_params=True``
each rank's ``state_dict`` holds, for every parameter (beside each unit's ``_flat_param``), the rank's piece of the flattened parameter
(possibly empty); in rank order the pieces are the whole flattened parameter. Buffers are whole on
every rank. The optimizer state holds ``ShardedTensor`` objects, which cannot be unpickled without
the original process group: here they are read as :class:`OfflineShardedTensor` (their local shards
and metadata only).
"""
import re
from pathlib import Path
from typing import Dict, Iterable, List, Tuple

import torch
from torch.distributed._shard.sharded_tensor.api import ShardedTensor

from .errors import CheckpointError
from .safe_load import sharded_tensor_globals, torch_load

_RANK_FILE = re.compile(r'^rank(\d+)\.pth$')


class OfflineShardedTensor(ShardedTensor):
    """A ``ShardedTensor`` read from a file without a process group: local shards and metadata."""

    def __setstate__(self, state):
        self._local_shards, self._metadata, self._pg_state, self._sharding_spec, self._init_rrefs = state
        self._sharded_tensor_id = None


def is_sharded_checkpoint(path) -> bool:
    p = Path(path)
    return p.is_dir() and any(_RANK_FILE.match(f.name) for f in p.iterdir())


def resolve_sharded_checkpoint(path) -> Path:
    """A sharded checkpoint folder, or a work dir whose ``last_checkpoint`` names one."""
    p = Path(path)
    if not p.exists():
        raise CheckpointError(f'{p}: not found (expected a sharded checkpoint folder iter_N.pth/ with '
                              'rank*.pth files, or a work dir with a last_checkpoint file)')
    if is_sharded_checkpoint(p):
        return p
    last = p / 'last_checkpoint'
    if p.is_dir() and last.is_file():
        target = Path(last.read_text().strip())
        if not target.is_absolute() and not target.exists():
            target = p / target.name
        if target.is_file():
            raise CheckpointError(f'{last} names {target}, an ordinary (not sharded) checkpoint: use it as it is')
        if not is_sharded_checkpoint(target):
            raise CheckpointError(f'{last} names {target}, which is not a sharded checkpoint folder (rank*.pth)')
        return target
    raise CheckpointError(f'{p}: not a sharded checkpoint (no rank*.pth files) and no last_checkpoint file in it')


def read_rank_file(path) -> dict:
    obj, _ = torch_load(path, mmap=False, extra_globals=sharded_tensor_globals(OfflineShardedTensor))
    if not isinstance(obj, dict) or not isinstance(obj.get('state_dict'), dict):
        raise CheckpointError(f'{path}: not an mmengine checkpoint (no state_dict)')
    return obj


def _world_size(rank0: dict, folder: Path) -> int:
    fsdp = (rank0.get('meta') or {}).get('fsdp') or {}
    if 'world_size' in fsdp:
        return int(fsdp['world_size'])
    # written by mmengine's own FSDPStrategy: the optimizer's ShardedTensors name every rank
    for state in ((rank0.get('optimizer') or {}).get('state') or {}).values():
        for v in state.values():
            if isinstance(v, ShardedTensor):
                return len(v.metadata().shards_metadata)
    raise CheckpointError(f'{folder}: cannot tell how many ranks wrote this checkpoint (no meta.fsdp.world_size, '
                          'no sharded optimizer state)')


def read_sharded_checkpoint(path) -> Tuple[List[dict], Path]:
    """Every rank's file of a sharded checkpoint, checked complete. Returns ``(per_rank, folder)``."""
    folder = resolve_sharded_checkpoint(path)
    rank0_file = folder / 'rank0.pth'
    if not rank0_file.is_file():
        raise CheckpointError(f'{rank0_file}: missing (rank 0 of the sharded checkpoint {folder})')
    rank0 = read_rank_file(rank0_file)
    world = _world_size(rank0, folder)
    found = sorted(int(m.group(1)) for f in folder.iterdir() if (m := _RANK_FILE.match(f.name)))
    extra = [r for r in found if r >= world]
    if extra:
        raise CheckpointError(f'{folder}: rank{extra[0]}.pth does not belong to a checkpoint of {world} ranks')
    out = [rank0]
    for r in range(1, world):
        f = folder / f'rank{r}.pth'
        if not f.is_file():
            raise CheckpointError(f'{f}: missing (rank {r} of {world} of the sharded checkpoint {folder})')
        out.append(read_rank_file(f))
        if out[-1].get('meta', {}).get('iter') != rank0.get('meta', {}).get('iter'):
            raise CheckpointError(f'{f}: iteration {out[-1].get("meta", {}).get("iter")} differs from rank0.pth\'s '
                                  f'{rank0.get("meta", {}).get("iter")}: the files are not one checkpoint')
    return out, folder


def assemble_state_dict(per_rank: List[dict], shapes: Dict[str, torch.Size], param_names: Iterable[str],
                        where: str) -> Dict[str, torch.Tensor]:
    """Whole tensors from the ranks' pieces: parameters are the rank-ordered concatenation of the
    flattened pieces (checked against ``shapes``), buffers are taken from rank 0."""
    params = set(param_names)
    # '<unit>._flat_param': FSDP's own flat view of a unit's parameters, repeated per parameter
    sds = [{k: v for k, v in r['state_dict'].items() if not k.endswith('_flat_param')} for r in per_rank]
    keys = set(sds[0])
    missing, unexpected = sorted(set(shapes) - keys), sorted(keys - set(shapes))
    if missing or unexpected:
        raise CheckpointError(f'{where}: does not match the model: missing {missing[:5]}, unexpected {unexpected[:5]}')
    out = {}
    for k, shape in shapes.items():
        for r, sd in enumerate(sds):
            if k not in sd:
                raise CheckpointError(f'{where}: rank{r}.pth has no {k!r}')
        if k in params:
            flat = torch.cat([sd[k].reshape(-1) for sd in sds])
            if flat.numel() != shape.numel():
                raise CheckpointError(f'{where}: {k}: the ranks hold {flat.numel()} values, the model expects '
                                      f'{tuple(shape)} = {shape.numel()}')
            out[k] = flat.reshape(shape).clone()
        else:
            t = sds[0][k]
            if t.shape != shape:
                raise CheckpointError(f'{where}: buffer {k} has shape {tuple(t.shape)}, expected {tuple(shape)}')
            out[k] = t.clone()
    return out
