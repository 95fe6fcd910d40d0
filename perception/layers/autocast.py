import contextlib

import torch

_AUTOCAST_DEVICES = ('cpu', 'cuda', 'xpu', 'mps', 'hpu')


def autocast_off(device_type: str):
    """``torch.autocast(device_type, enabled=False)``; a no-op for devices autocast does not know
    (``meta``: shape and FLOP analysis)."""
    if device_type in _AUTOCAST_DEVICES:
        return torch.autocast(device_type, enabled=False)
    return contextlib.nullcontext()


def compute_dtype(x: torch.Tensor) -> torch.dtype:
    """The dtype a matmul on ``x`` computes in: autocast's for ``x``'s device when autocast is on there,
    else ``x``'s own (float64 is never cast, as autocast leaves it). Casting an activation to it once, before several matmuls read it, gives the values
    autocast's own casts would (a cast is deterministic) without casting it again for each of them."""
    dev = x.device.type
    if x.dtype != torch.float64 and dev in _AUTOCAST_DEVICES and torch.is_autocast_enabled(dev):
        return torch.get_autocast_dtype(dev)
    return x.dtype
