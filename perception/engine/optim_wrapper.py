"""bf16 autocast training on any device (mmengine's AmpOptimWrapper insists on CUDA/NPU/MLU)."""
from contextlib import contextmanager

import torch
from mmengine.optim import OptimWrapper
from ..registry import register


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bf16 natively (AVX-512-BF16 or AMX, as oneDNN reports it). Without it
    (e.g. AVX2-only CPUs) bf16 autocast is emulated and runs many times slower than fp32."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def cpu_bf16_note() -> str:
    return (f'this CPU ({torch.backends.cpu.get_cpu_capability()}) has no native bf16 (AVX-512-BF16 or AMX): '
            'bf16 autocast is emulated here and can be many times slower than fp32')


@register('OPTIM_WRAPPERS')
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
