"""Regional compilation of InternViT blocks (``compile_blocks``).

Every block of an InternViT runs the same code on tensors of the same shapes, so one
``torch.compile`` of the block body serves all of them: the compile cost does not grow with depth
(PyTorch's "regional compilation"). The body takes the drop-path scales as tensor arguments, so
blocks with different drop-path rates share the graph; what is left to specialise on is bounded
(grad on / off, autocast dtype, and dynamic shapes after the first size change), and each new
graph is logged with the shapes that caused it.

``mode`` is False (eager), True (compile where the platform can; otherwise one warning and the eager
path) or ``'force'`` (compile or raise ``BackendUnavailableError`` naming what is missing).
"""
import functools
import os
import shutil
import sys
import warnings
from typing import Callable, Optional, Union

import torch

from .attention import BackendUnavailableError

_STATE = {'broken': None, 'graphs': 0}


def check_compile_mode(mode) -> Union[bool, str]:
    """False, True or 'force'; anything else is refused (not converted)."""
    if mode is True or mode is False or mode == 'force':
        return mode
    raise ValueError(f"compile_blocks must be False, True or 'force', got {mode!r}")


def compile_unavailable_reason(device_type: str = 'cpu') -> Optional[str]:
    """None when inductor can build kernels for ``device_type`` here, else why not."""
    if not hasattr(torch, 'compile'):
        return 'this torch has no torch.compile'
    if _STATE['broken']:
        return _STATE['broken']
    if device_type == 'cuda':
        try:
            import triton  # noqa: F401
        except Exception as e:
            return f'torch.compile on CUDA needs triton, which is not importable ({type(e).__name__}: {e})'
        return None
    if device_type == 'cpu':
        cxx = os.environ.get('CXX') or next((c for c in ('g++', 'clang++', 'c++') if shutil.which(c)), None)
        if not cxx or not shutil.which(cxx.split()[0]):
            return ('torch.compile on CPU needs a C++ compiler (g++ or clang++ on PATH, or $CXX), '
                    'none found')
        return None
    return f'compile_blocks is not supported on {device_type!r} devices'


@functools.lru_cache(maxsize=None)
def _warn_once(msg: str):
    warnings.warn(msg, RuntimeWarning, stacklevel=3)


def _log(msg: str):
    """Into mmengine's current logger (the run's log file) when mmengine is in use, else stderr; the
    layers never import OpenMMLab themselves."""
    mmlogging = sys.modules.get('mmengine.logging')
    if mmlogging is not None:
        mmlogging.print_log(msg, logger='current')
    else:
        print(msg, file=sys.stderr)


def _backend(gm, example_inputs):
    """inductor, with one log line per new graph (the shapes that caused it)."""
    from torch._inductor.compile_fx import compile_fx
    _STATE['graphs'] += 1
    shapes = [tuple(t.shape) for t in example_inputs if isinstance(t, torch.Tensor) and t.dim() == 3]
    _log(f'InternViT: compiling the block graph #{_STATE["graphs"]} (token shapes {shapes[:1]}, '
         f'grad {"on" if torch.is_grad_enabled() else "off"}); every block reuses it')
    return compile_fx(gm, example_inputs)


@functools.lru_cache(maxsize=None)
def compiled(fn: Callable) -> Callable:
    """The one compiled version of ``fn`` (shared by every block that calls it)."""
    return torch.compile(fn, backend=_backend, dynamic=None)


def run(fn: Callable, mode, *args):
    """``fn(*args)`` compiled when ``mode`` asks for it and the platform can, else eager."""
    if not mode or torch.compiler.is_compiling() or torch.compiler.is_exporting():
        return fn(*args)
    x = args[1]
    why = compile_unavailable_reason(x.device.type)
    if why is not None:
        if mode == 'force':
            raise BackendUnavailableError(f"compile_blocks='force': {why} (compile_blocks=True, i.e. --compile, "
                                          "runs the blocks eagerly where they cannot compile)")
        _warn_once(f'compile_blocks: running the blocks eagerly: {why}')
        return fn(*args)
    try:
        return compiled(fn)(*args)
    except Exception as e:  # BackendCompilerFailed / InductorError: a broken toolchain
        if not _is_toolchain_error(e):
            raise
        _STATE['broken'] = f'torch.compile failed ({type(e).__name__}: {str(e).strip().splitlines()[0][:200]})'
        if mode == 'force':
            raise BackendUnavailableError(f"compile_blocks='force': {_STATE['broken']} (compile_blocks=True, i.e. "
                                          "--compile, runs the blocks eagerly where they cannot compile)") from e
        _warn_once(f'compile_blocks: running the blocks eagerly: {_STATE["broken"]}')
        return fn(*args)


def _is_toolchain_error(e: Exception) -> bool:
    names = {c.__name__ for c in type(e).__mro__}
    return bool(names & {'BackendCompilerFailed', 'InductorError', 'CppCompileError', 'InvalidCxxCompiler'})


def graphs_compiled() -> int:
    """How many block graphs were compiled in this process (for tests and benchmarks)."""
    return _STATE['graphs']
