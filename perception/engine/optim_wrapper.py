"""bf16 autocast training on any device (mmengine's AmpOptimWrapper insists on CUDA/NPU/MLU)."""
from contextlib import contextmanager

import torch
from mmengine.optim import OptimWrapper


class BF16OptimWrapper(OptimWrapper):
    """``OptimWrapper`` whose forward runs under ``torch.autocast(dtype=bfloat16)`` on the model's
    device type (CPU with AVX-512-BF16/AMX, or CUDA). bf16 has fp32's exponent range, so no loss
    scaling is needed; weights, gradients and optimizer state stay fp32."""

    def __init__(self, dtype='bfloat16', device_type=None, **kwargs):
        super().__init__(**kwargs)
        self.cast_dtype = getattr(torch, dtype) if isinstance(dtype, str) else dtype
        self.device_type = device_type

    @contextmanager
    def optim_context(self, model):
        device = self.device_type
        if device is None:
            p = next(model.parameters(), None)
            device = p.device.type if p is not None else 'cpu'
        with super().optim_context(model), torch.autocast(device_type=device, dtype=self.cast_dtype):
            yield


def register():
    from ..models.registry import register_modules
    register_modules('OPTIM_WRAPPERS', [BF16OptimWrapper])
