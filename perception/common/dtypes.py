"""The dtype names the project accepts (configs, CLI flags, API arguments), in one table.

Names map to ``torch`` attribute names so that this module stays torch-free; ``torch_dtype`` resolves
one (importing torch) and refuses an unknown name in one line listing the known ones."""
from typing import Iterable, Optional

#: accepted name -> ``torch.<attribute>``
DTYPE_NAMES = {'fp32': 'float32', 'float32': 'float32', 'bf16': 'bfloat16', 'bfloat16': 'bfloat16',
               'fp16': 'float16', 'float16': 'float16'}
#: the half-precision names a frozen backbone may be held in (``InternViT(weights_dtype=...)``)
LOW_PRECISION = ('bf16', 'fp16')


def torch_dtype(name: str, allowed: Optional[Iterable[str]] = None, what: str = 'dtype'):
    """``'bf16'`` -> ``torch.bfloat16``. ``allowed``: the names this caller takes (default: all);
    anything else raises ``ValueError`` naming ``what``, the value and the choices."""
    choices = sorted(allowed if allowed is not None else DTYPE_NAMES)
    if not isinstance(name, str) or name not in choices or name not in DTYPE_NAMES:
        raise ValueError(f'unknown {what} {name!r} (choose from {choices})')
    import torch
    return getattr(torch, DTYPE_NAMES[name])
