import contextlib

import torch

_AUTOCAST_DEVICES = ('cpu', 'cuda', 'xpu', 'mps', 'hpu')


def autocast_off(device_type: str):
    """``torch.autocast(device_type, enabled=False)``; a no-op for devices autocast does not know
    (``meta``: shape and FLOP analysis)."""
    if device_type in _AUTOCAST_DEVICES:
        return torch.autocast(device_type, enabled=False)
    return contextlib.nullcontext()
