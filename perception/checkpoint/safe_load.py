"""``torch.load`` with ``weights_only=True`` only, plus the allow-list mmengine checkpoints need.

mmengine stores a ``HistoryBuffer`` and numpy arrays/scalars in ``message_hub``; with torch's
weights-only unpickler those are refused unless allow-listed. :func:`allow_mmengine_globals`
registers exactly those classes (``torch.serialization.add_safe_globals``), so resume,
``load_from`` and ``mmseg.apis.init_model`` work while any other global is still refused.
"""
import pickle
import re
import zipfile
from pathlib import Path

import torch

from .errors import CheckpointError

_ALLOWED = False


def mmengine_safe_globals():
    import numpy as np
    out = [np.ndarray, np.dtype]
    for mod in ('numpy._core.multiarray', 'numpy.core.multiarray'):
        try:
            m = __import__(mod, fromlist=['_reconstruct', 'scalar'])
            out += [m._reconstruct, m.scalar]
            break
        except (ImportError, AttributeError):
            continue
    # numpy >= 1.25 pickles dtypes as numpy.dtypes.<Name>DType classes
    try:
        import numpy.dtypes as npd
        out += [getattr(npd, n) for n in dir(npd) if n.endswith('DType') and isinstance(getattr(npd, n), type)]
    except ImportError:
        pass
    try:
        from mmengine.logging.history_buffer import HistoryBuffer
        out.append(HistoryBuffer)
    except ImportError:
        pass
    try:
        from mmengine.config import ConfigDict
        out.append(ConfigDict)
    except ImportError:
        pass
    import collections
    out += [collections.OrderedDict, collections.defaultdict]
    return out


_HISTORY_BUFFER_METHODS = ('min', 'max', 'current', 'mean')


def _allowed_getattr(obj, name, *default):
    """Stands in for ``builtins.getattr`` while unpickling, allowing nothing but these lookups:

    * ``HistoryBuffer.{min,max,current,mean}``: ``HistoryBuffer.__getstate__`` stores its statistics
      methods, which pickle writes as ``getattr(HistoryBuffer, 'min')`` etc.;
    * ``ShardedTensor.ProcessGroupState`` (a plain named tuple) in FSDP's sharded checkpoints.

    Allowing the real ``getattr`` would let a checkpoint reach any attribute of any allow-listed class.
    """
    from mmengine.logging.history_buffer import HistoryBuffer
    if not default:
        if obj is HistoryBuffer and name in _HISTORY_BUFFER_METHODS:
            return getattr(obj, name)
        if name == 'ProcessGroupState' and isinstance(obj, type) and obj.__name__ in _SHARDED_TENSOR_NAMES:
            from torch.distributed._shard.sharded_tensor.api import ShardedTensor
            if issubclass(obj, ShardedTensor):
                return ShardedTensor.ProcessGroupState
    raise pickle.UnpicklingError(
        f'refusing getattr({getattr(obj, "__name__", type(obj).__name__)}, {name!r}) in a weights-only '
        f'load: only HistoryBuffer.{{{",".join(_HISTORY_BUFFER_METHODS)}}} and ShardedTensor.ProcessGroupState '
        'are allowed')


_SHARDED_TENSOR_NAMES = ('ShardedTensor', 'OfflineShardedTensor')


def sharded_tensor_globals(sharded_tensor_cls=None) -> list:
    """What FSDP's sharded ('local') checkpoints hold beyond mmengine's globals, for
    ``torch.serialization.safe_globals`` around their loading. ``sharded_tensor_cls`` replaces
    ``ShardedTensor`` (e.g. a subclass that reads a shard without a process group)."""
    from torch.distributed._shard import metadata as shard_md
    from torch.distributed._shard.sharded_tensor import api, metadata, shard
    from torch.distributed._shard.sharding_spec import api as spec_api
    from torch.distributed._shard.sharding_spec import chunk_sharding_spec
    from torch.distributed.remote_device import _remote_device
    st = api.ShardedTensor if sharded_tensor_cls is None else \
        (sharded_tensor_cls, 'torch.distributed._shard.sharded_tensor.api.ShardedTensor')
    return [st, api.ShardedTensor.ProcessGroupState, metadata.MEM_FORMAT_ENCODING, metadata.ShardedTensorMetadata,
            metadata.TensorProperties, shard.Shard, shard_md.ShardMetadata, spec_api.EnumerableShardingSpec,
            chunk_sharding_spec.ChunkShardingSpec, _remote_device]


def allow_mmengine_globals():
    """Allow-list the classes mmengine checkpoints contain (idempotent)."""
    global _ALLOWED
    if not _ALLOWED:
        torch.serialization.add_safe_globals(
            mmengine_safe_globals() + [(_allowed_getattr, 'builtins.getattr')])
        _ALLOWED = True


def torch_load(path, mmap: bool = True, extra_globals=None):
    """Weights-only ``torch.load`` on CPU, memory-mapped when the file allows; clear errors.
    ``extra_globals``: allowed for this load only (``torch.serialization.safe_globals``).

    Returns ``(object, mmapped)``.
    """
    allow_mmengine_globals()
    path = str(path)
    if not Path(path).is_file():
        raise CheckpointError(f'checkpoint file not found: {path}')
    try:
        is_zip = zipfile.is_zipfile(path)
        size = Path(path).stat().st_size
    except OSError as e:
        raise CheckpointError(f'cannot read checkpoint {path}: {e}') from e
    if size == 0:
        raise CheckpointError(f'checkpoint {path} is empty (0 bytes): an interrupted write or copy?')
    use_mmap = mmap and is_zip
    try:
        with torch.serialization.safe_globals(list(extra_globals or [])):
            return torch.load(path, map_location='cpu', weights_only=True, mmap=use_mmap), use_mmap
    except pickle.UnpicklingError as e:
        msg = re.sub(r'\x1b\[[0-9;]*m', '', str(e))
        lines = [ln.strip() for ln in msg.splitlines() if ln.strip()]
        why = next((ln for ln in lines if 'Unsupported global' in ln or 'refusing getattr' in ln), lines[0] if lines else '')
        raise CheckpointError(
            f'refusing to load {path}: {why}. The file holds Python objects outside the weights-only '
            'allow-list; perception never unpickles arbitrary code. If you trust the file, re-save its '
            'tensors only (e.g. a safetensors file).') from e
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError, IndexError, KeyError) as e:
        raise CheckpointError(f'cannot read checkpoint {path} (truncated or corrupt?): '
                              f'{str(e).splitlines()[0]}') from e
