"""The one random-weight filler of the benchmarks, and models given random weights where they run.

Timings do not depend on the values, but they must be ordinary numbers (no NaN, no denormals): norm
weights 1, other 1-d tensors (biases, layer scales) 0.1, matrices N(0, 0.02)."""
from typing import Iterable, Optional, Tuple

import torch


def fill_random_(named_tensors: Iterable[Tuple[str, torch.Tensor]], generator: Optional[torch.Generator] = None):
    """Fill ``(name, tensor)`` pairs in place (``module.named_parameters()`` or a state dict's ``items()``)."""
    with torch.no_grad():
        for name, t in named_tensors:
            if t.ndim == 1:
                t.fill_(1.0 if 'norm' in name else 0.1)
            else:
                t.normal_(0, 0.02, generator=generator)


def materialize_random(model: torch.nn.Module, dtype: torch.dtype, device: str,
                       generator: Optional[torch.Generator] = None) -> torch.nn.Module:
    """A model built on ``meta`` given random weights created directly in ``dtype`` on ``device`` (never
    materialised in fp32 first), in eval mode."""
    model.to(dtype)
    model.to_empty(device=device)
    fill_random_(model.named_parameters(), generator)
    return model.eval()


def build_random(arch: dict, dtype: torch.dtype, device: str, attn_backend: str):
    """A frozen :class:`~perception.models.InternViT` of ``arch`` with random weights in ``dtype``."""
    from perception.models import InternViT
    with torch.device('meta'):
        model = InternViT(arch, attn_backend=attn_backend, frozen=True)
    return materialize_random(model, dtype, device, torch.Generator(device=device).manual_seed(0))
