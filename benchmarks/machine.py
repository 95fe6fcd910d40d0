"""Where a figure was measured (:func:`machine_line`) and how much memory it took: the process's resident
set from ``/proc/self/status`` (Linux) and the CUDA allocator's peak."""
import datetime
import os
import platform
from typing import Callable, Optional

import torch


def machine_line(device: str = 'cpu') -> str:
    """Where and when a figure was measured, for the line every benchmark prints above its table: date,
    CPU model with family/model and the features that decide bf16 speed (a bf16 matmul is native with
    ``avx512_bf16`` or AMX, emulated on AVX2-only CPUs), usable cores, memory, torch and its threads;
    the GPU's name on CUDA."""
    info = {}
    try:
        with open('/proc/cpuinfo') as f:
            for line in f:
                if not line.strip():
                    break  # the first processor is enough
                k, _, v = line.partition(':')
                info[k.strip()] = v.strip()
    except OSError:
        pass
    flags = set(info.get('flags', '').split())
    feats = [f for f in ('avx2', 'avx512f', 'avx512_bf16', 'amx_bf16') if f in flags]
    bf16 = 'native bf16' if {'avx512_bf16', 'amx_bf16'} & flags else 'no native bf16'
    cpu = info.get('model name') or platform.processor() or platform.machine()
    if 'cpu family' in info:
        cpu += f" (family {info['cpu family']} model {info.get('model', '?')}; {', '.join(feats) or 'no AVX2'}; {bf16})"
    cores = len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else os.cpu_count()
    try:
        with open('/proc/meminfo') as f:
            mem = next(int(ln.split()[1]) for ln in f if ln.startswith('MemTotal')) / 2 ** 20
        mem_s = f', {mem:.1f} GiB'
    except (OSError, StopIteration, ValueError):
        mem_s = ''
    where = f'{cpu}, {cores} cores{mem_s}'
    if str(device).startswith('cuda') and torch.cuda.is_available():
        where = f'{torch.cuda.get_device_name(torch.device(device))}; host {where}'
    return (f'{datetime.date.today().isoformat()}, {where}, torch {torch.__version__} '
            f'({torch.get_num_threads()} threads)')


def rss_kb(field: str) -> int:
    """A memory field of this process in kB: ``'VmRSS'`` (resident now), ``'VmHWM'`` (its peak); 0 where
    ``/proc`` has none."""
    try:
        with open('/proc/self/status') as f:
            for line in f:
                if line.startswith(field + ':'):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def reset_peak_rss() -> bool:
    """Reset this process's ``VmHWM`` to its current resident set (Linux ``clear_refs``); False where
    the kernel does not allow it."""
    try:
        with open('/proc/self/clear_refs', 'w') as f:
            f.write('5')
        return True
    except OSError:
        return False


def cuda_peak_mb(fn: Callable, device: str) -> Optional[float]:
    """MiB the CUDA allocator held at most above what it held before one call of ``fn``; None off CUDA."""
    if not str(device).startswith('cuda'):
        return None
    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    fn()
    torch.cuda.synchronize()
    return (torch.cuda.max_memory_allocated() - base) / 2 ** 20
