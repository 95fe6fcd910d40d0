"""Multi-head self-attention of InternViT with one switch for the kernel.

The kernel is chosen in one place, :func:`resolve_attn_backend`:

* ``'math'``: the readable reference (explicit ``softmax(q k^T * scale) v``, softmax in float32);
* ``'sdpa'``: ``torch.nn.functional.scaled_dot_product_attention`` (flash / memory-efficient
  kernels on CPU and CUDA);
* ``'xformers'``: ``xformers.ops.memory_efficient_attention`` (CUDA only);
* ``'auto'``: xformers when it is importable and the tensors are on CUDA, else SDPA.

``attn_backend='auto'`` can be overridden by the environment variable ``PERCEPTION_ATTN``.
Every path uses the same parameters (``qkv``, ``q_norm``, ``k_norm``, ``proj``), so one
checkpoint loads whichever kernel runs.
"""
import functools
import os

import torch
import torch.nn.functional as F
from torch import nn

from .norm import RMSNorm

ATTN_BACKENDS = ('auto', 'xformers', 'sdpa', 'math')


class BackendUnavailableError(RuntimeError):
    """A kernel or compiler asked for explicitly that this machine lacks (xformers not installed or
    without kernels for this torch / device; ``compile_blocks='force'`` without a working compiler).
    The message says what is missing and what to do. ``perception.models.InternViT`` reports it as
    ``perception.common.errors.UnavailableError`` (one line from the tools); the layers import nothing
    of the project."""


@functools.lru_cache(maxsize=None)
def _xformers_ops():
    try:
        import xformers.ops as xops  # noqa: F401
    except Exception:  # ImportError, or a broken build that fails on import
        return None
    return xops


def xformers_available() -> bool:
    return _xformers_ops() is not None


@functools.lru_cache(maxsize=None)
def xformers_unusable_reason(device_type: str = 'cuda'):
    """None when xformers' memory-efficient attention runs on ``device_type``, else why it does not.

    An importable xformers can still lack kernels for this torch / CUDA (a wheel built for another
    torch imports, warns, and then raises ``NotImplementedError`` on the first call): one tiny call
    tells, once per device type.
    """
    xops = _xformers_ops()
    if xops is None:
        return 'xformers is not importable'
    try:
        q = torch.zeros(1, 8, 1, 16, device=device_type, dtype=torch.float16)
        xops.memory_efficient_attention(q, q, q)
    except Exception as e:  # NotImplementedError ("No operator found"), RuntimeError
        return f'xformers cannot run on {device_type}: ' + (str(e).strip().splitlines() or [type(e).__name__])[0]
    return None


def check_attn_backend(name: str) -> str:
    if name not in ATTN_BACKENDS:
        raise ValueError(f'attn_backend must be one of {ATTN_BACKENDS}, got {name!r}')
    return name


def requested_attn_backend(attn_backend: str = 'auto') -> str:
    """The backend asked for: the argument, or ``$PERCEPTION_ATTN`` when the argument is 'auto'."""
    check_attn_backend(attn_backend)
    if attn_backend == 'auto':
        env = os.environ.get('PERCEPTION_ATTN', '').strip().lower()
        if env:
            if env not in ATTN_BACKENDS:
                raise ValueError(f'PERCEPTION_ATTN must be one of {ATTN_BACKENDS}, got {env!r}')
            return env
    return attn_backend


def resolve_attn_backend(attn_backend: str = 'auto', device='cpu') -> str:
    """The kernel that runs for ``attn_backend`` on ``device``: 'xformers', 'sdpa' or 'math'.

    Raises ``BackendUnavailableError`` instead of falling back silently when an explicitly requested
    kernel cannot run.
    """
    name = requested_attn_backend(attn_backend)
    dev = torch.device(device).type
    if name == 'auto':
        if dev == 'cuda' and xformers_available():
            why = xformers_unusable_reason('cuda')
            if why is None:
                return 'xformers'
            _warn_once(f"attn_backend='auto' uses PyTorch SDPA: {why}")
        return 'sdpa'
    if name == 'xformers':
        if not xformers_available():
            raise BackendUnavailableError("attn_backend='xformers' but xformers is not importable here: "
                                          "pip install 'perception[xformers]' (CUDA machines), or use 'sdpa' "
                                          "or 'auto'")
        if dev not in ('cuda', 'meta'):
            raise BackendUnavailableError(f"attn_backend='xformers' needs CUDA tensors (xformers has no {dev} "
                                          "kernels); use 'sdpa' or 'auto'")
        if dev == 'cuda' and xformers_unusable_reason('cuda') is not None:
            raise BackendUnavailableError(f"attn_backend='xformers': {xformers_unusable_reason('cuda')}; "
                                          "reinstall xformers for this torch, or use 'sdpa' / 'auto'")
    return name


@functools.lru_cache(maxsize=None)
def _warn_once(msg: str):
    import warnings
    warnings.warn(msg, RuntimeWarning, stacklevel=3)


def attention_kernel(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float,
                     backend: str) -> torch.Tensor:
    """``softmax(q k^T * scale) v`` for ``[B, N, heads, head_dim]`` tensors, returned in that layout.

    ``backend`` is a resolved kernel: 'xformers', 'sdpa' or 'math' (softmax in float32).
    """
    if backend == 'xformers':
        return _xformers_ops().memory_efficient_attention(q, k, v, scale=scale)
    q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
    if backend == 'sdpa':
        out = F.scaled_dot_product_attention(q, k, v, scale=scale)
    elif backend == 'math':
        attn = (q * scale) @ k.transpose(-2, -1)
        attn = attn.float().softmax(dim=-1).to(v.dtype)
        out = attn @ v
    else:
        raise ValueError(f'attention_kernel: backend must be resolved to xformers/sdpa/math, got {backend!r}')
    return out.transpose(1, 2)


class Attention(nn.Module):
    """InternViT attention: fused qkv, optional q/k RMSNorm over the FULL width, output proj.

    q and k are normalised as ``[B, N, heads * head_dim]`` tensors with weights of size
    ``embed_dims`` before the heads are split (timm's per-head ``qk_norm`` is a different operation).
    """

    def __init__(self, embed_dims: int, num_heads: int, qkv_bias: bool = False, qk_normalization: bool = True,
                 norm_eps: float = 1e-6, attn_backend: str = 'auto'):
        super().__init__()
        if embed_dims % num_heads:
            raise ValueError(f'embed_dims {embed_dims} is not divisible by num_heads {num_heads}')
        self.embed_dims = embed_dims
        self.num_heads = num_heads
        self.head_dim = embed_dims // num_heads
        self.scale = self.head_dim ** -0.5
        self.attn_backend = check_attn_backend(attn_backend)
        self.qkv = nn.Linear(embed_dims, embed_dims * 3, bias=qkv_bias)
        self.qk_normalization = qk_normalization
        if qk_normalization:
            self.q_norm = RMSNorm(embed_dims, eps=norm_eps)
            self.k_norm = RMSNorm(embed_dims, eps=norm_eps)
        self.proj = nn.Linear(embed_dims, embed_dims)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, N, C = x.shape
        qkv = self.qkv(x).view(B, N, 3, C)
        q, k, v = qkv.unbind(2)  # [B, N, C] each
        if self.qk_normalization:
            q = self.q_norm(q)
            k = self.k_norm(k)
        backend = resolve_attn_backend(self.attn_backend, x.device)
        # A common dtype for the kernels (RMSNorm's fp32 weight can promote q/k under autocast).
        dtype = v.dtype
        H, D = self.num_heads, self.head_dim
        out = attention_kernel(q.to(dtype).view(B, N, H, D), k.to(dtype).view(B, N, H, D),
                               v.reshape(B, N, H, D), self.scale, backend)
        out = out.reshape(B, N, C)
        return self.proj(out)

    def extra_repr(self) -> str:
        return f'heads={self.num_heads}, head_dim={self.head_dim}, attn_backend={self.attn_backend!r}'
