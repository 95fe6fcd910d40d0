"""Lazy, memory-lean reading and atomic writing of checkpoint files.

Tensors are exposed as :class:`LazyTensor` (shape and dtype known without reading data), so a
6B checkpoint can be inspected, converted and loaded one tensor at a time: safetensors are read
with the ``safetensors`` library, one tensor's mapping open at a time; pickles are memory-mapped
and each tensor's pages are released (``madvise(DONTNEED)``) once copied. Writing streams one
tensor at a time into the safetensors layout (the library writes only whole in-memory dicts).
"""
import ctypes
import json
import mmap as _mmap
import struct
from pathlib import Path
from typing import Callable, Dict, Iterable, Optional, Tuple

import torch

from ..common.files import atomic_write
from .errors import CheckpointError
from .safe_load import torch_load

ST_DTYPES = {
    'F64': torch.float64, 'F32': torch.float32, 'F16': torch.float16, 'BF16': torch.bfloat16,
    'I64': torch.int64, 'I32': torch.int32, 'I16': torch.int16, 'I8': torch.int8, 'U8': torch.uint8,
    'BOOL': torch.bool,
}
ST_NAMES = {v: k for k, v in ST_DTYPES.items()}
_PAGE = _mmap.PAGESIZE


class LazyTensor:
    """A tensor not yet read: ``shape``, ``dtype``, ``load()``, ``release()``."""

    def __init__(self, shape, dtype, loader: Callable[[], torch.Tensor], source: str = '',
                 releaser: Optional[Callable[[], None]] = None):
        self.shape = torch.Size(shape)
        self.dtype = dtype
        self._loader = loader
        self._releaser = releaser
        self.source = source

    @classmethod
    def wrap(cls, t: torch.Tensor, source: str = '', mmapped: bool = False) -> 'LazyTensor':
        return cls(t.shape, t.dtype, lambda: t, source, (lambda: _release_pages(t)) if mmapped else None)

    def load(self) -> torch.Tensor:
        return self._loader()

    def release(self):
        if self._releaser is not None:
            self._releaser()

    def numel(self) -> int:
        return self.shape.numel()

    def __repr__(self):
        return f'LazyTensor({tuple(self.shape)}, {self.dtype}, {self.source})'


def concat_lazy(parts, dim: int = 0) -> LazyTensor:
    shape = list(parts[0].shape)
    shape[dim] = sum(p.shape[dim] for p in parts)

    def load():
        return torch.cat([p.load() for p in parts], dim)

    def release():
        for p in parts:
            p.release()
    return LazyTensor(shape, parts[0].dtype, load, parts[0].source, release)


def _release_pages(t: torch.Tensor):
    """Drop the resident pages of a tensor that lives in a private read-only file mapping."""
    try:
        nbytes = t.numel() * t.element_size()
        if nbytes < _PAGE:
            return
        addr = t.data_ptr()
        start = addr - addr % _PAGE
        end = addr + nbytes
        end = end + (-end) % _PAGE
        libc = ctypes.CDLL(None, use_errno=True)
        libc.madvise(ctypes.c_void_p(start), ctypes.c_size_t(end - start), 4)  # MADV_DONTNEED
    except Exception:  # best effort: only memory use depends on it
        pass


# ----------------------------------------------------------------------------- safetensors
def _safe_open(path):
    """``safetensors.safe_open`` with the library's errors turned into one line naming the file."""
    from safetensors import SafetensorError, safe_open
    if not Path(path).is_file():
        raise CheckpointError(f'checkpoint file not found: {path}')
    try:
        return safe_open(path, framework='pt')
    except SafetensorError as e:
        why = str(e)
        if 'not fully covered' in why or 'too small' in why or 'invalid header length' in why:
            why = f'truncated or not a safetensors file ({e})'
        raise CheckpointError(f'{path}: {why}') from e


def read_safetensors(path) -> Tuple[Dict[str, LazyTensor], dict]:
    """Lazy tensors of a safetensors file and its ``__metadata__``, read with the ``safetensors``
    library. ``load()`` opens the file for that one tensor and copies it out of the mapping, which is
    closed before returning: a 6B file is read with one tensor's pages resident at a time (the peak
    RSS of a whole load stays at the size of the loaded weights)."""
    path = str(path)
    with _safe_open(path) as f:
        meta = f.metadata() or {}
        info = {}
        for k in f.keys():
            sl = f.get_slice(k)
            st_dtype = sl.get_dtype()
            if st_dtype not in ST_DTYPES:
                raise CheckpointError(f'{path}: tensor {k!r} has unsupported dtype {st_dtype!r}')
            info[k] = (list(sl.get_shape()), ST_DTYPES[st_dtype])

    def load(key, shape, dtype):
        with _safe_open(path) as f:
            view = f.get_tensor(key)  # a view of the file mapping
            t = torch.empty(shape, dtype=dtype)
            t.copy_(view)
            del view
        return t
    out = {k: LazyTensor(shape, dtype, (lambda k=k, s=shape, d=dtype: load(k, s, d)), path)
           for k, (shape, dtype) in info.items()}
    return out, meta


def write_safetensors(path, tensors: Dict[str, LazyTensor], metadata: Optional[dict] = None,
                      dtype: Optional[torch.dtype] = None, progress: Optional[Callable] = None):
    """Stream lazy tensors into a safetensors file (atomically), casting floats to ``dtype``.

    Only one tensor is in memory at a time.
    """
    names = sorted(tensors)

    def out_dtype(lt):
        return dtype if (dtype is not None and lt.dtype.is_floating_point) else lt.dtype

    header, offset = {}, 0
    for k in names:
        lt = tensors[k]
        dt = out_dtype(lt)
        nbytes = lt.numel() * torch.empty((), dtype=dt).element_size()
        header[k] = {'dtype': ST_NAMES[dt], 'shape': list(lt.shape), 'data_offsets': [offset, offset + nbytes]}
        offset += nbytes
    if metadata:
        header['__metadata__'] = {str(k): str(v) for k, v in metadata.items()}
    hbytes = json.dumps(header, separators=(',', ':')).encode()
    hbytes += b' ' * ((-len(hbytes)) % 8)
    with atomic_write(path) as tmp:
        with open(tmp, 'wb') as f:
            f.write(struct.pack('<Q', len(hbytes)))
            f.write(hbytes)
            it: Iterable = progress(names) if progress else names
            for k in it:
                lt = tensors[k]
                t = lt.load().to(out_dtype(lt)).contiguous()
                if tuple(t.shape) != tuple(lt.shape):
                    raise CheckpointError(f'tensor {k!r}: loaded shape {tuple(t.shape)} != declared {tuple(lt.shape)}')
                if t.numel():
                    f.write(t.view(-1).view(torch.uint8).numpy().tobytes())
                lt.release()
                del t
    return Path(path)


# ----------------------------------------------------------------------------- pickles
def _is_tensor_dict(d) -> bool:
    return isinstance(d, dict) and len(d) > 0 and all(isinstance(v, torch.Tensor) for v in d.values())


def unwrap_state_dict(obj, path: str = '') -> Tuple[dict, Optional[str]]:
    """The tensor dict inside a checkpoint object and the wrapper key it sat under.

    Accepts a flat state dict and the wrappers ``module`` (DeepSpeed, InternVL release),
    ``state_dict`` (mmengine / mmcv), ``model`` (InternVL heads, timm training checkpoints).
    """
    if not isinstance(obj, dict):
        raise CheckpointError(f'{path}: expected a dict of tensors, got {type(obj).__name__}')
    for key in ('state_dict', 'module', 'model'):
        inner = obj.get(key)
        if isinstance(inner, dict) and inner and any(isinstance(v, torch.Tensor) for v in inner.values()):
            sd = {k: v for k, v in inner.items() if isinstance(v, torch.Tensor)}
            return sd, key
    if any(isinstance(v, torch.Tensor) for v in obj.values()):
        return {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}, None
    raise CheckpointError(f'{path}: no tensors found (top-level keys: {sorted(map(str, obj))[:10]})')


def read_pickle(path) -> Tuple[Dict[str, LazyTensor], Optional[str], dict]:
    """Lazy tensors of a ``torch.save``d checkpoint, its wrapper key, and its non-tensor top level."""
    obj, mmapped = torch_load(path)
    sd, wrapper = unwrap_state_dict(obj, str(path))
    extra = {k: v for k, v in obj.items() if k != wrapper} if wrapper else {}
    return {k: LazyTensor.wrap(v, str(path), mmapped) for k, v in sd.items()}, wrapper, extra
