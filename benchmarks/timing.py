"""The one timer of the benchmarks: wall-clock time of calls, several functions timed in turn
(a, b, a, b, ...) so that load drifts hit them all, and calls that wait for the GPU."""
import statistics
import time
from typing import Callable, List, Sequence

import torch


def synced(fn: Callable, device: str) -> Callable:
    """``fn`` followed by ``torch.cuda.synchronize()`` on a CUDA device (so its time is the GPU's);
    ``fn`` itself elsewhere."""
    if not str(device).startswith('cuda'):
        return fn

    def run():
        out = fn()
        torch.cuda.synchronize()
        return out
    return run


def interleaved_times(fns: Sequence[Callable], repeats: int, warmup: int = 0) -> List[List[float]]:
    """Seconds of each call of each function after ``warmup`` untimed rounds, the functions timed in
    turn (a, b, a, b, ...) ``repeats`` times."""
    for _ in range(warmup):
        for fn in fns:
            fn()
    ts = [[] for _ in fns]
    for _ in range(repeats):
        for i, fn in enumerate(fns):
            t = time.perf_counter()
            fn()
            ts[i].append(time.perf_counter() - t)
    return ts


def interleaved_medians(fns: Sequence[Callable], repeats: int, warmup: int) -> List[float]:
    """Median ms of each function, timed in turn (a, b, a, b, ...) so that load drifts hit both."""
    return [statistics.median(t) * 1e3 for t in interleaved_times(fns, repeats, warmup)]


def call_times(fn: Callable, repeats: int, warmup: int = 0) -> List[float]:
    """Seconds of each of ``repeats`` calls of ``fn`` after ``warmup`` untimed ones."""
    return interleaved_times([fn], repeats, warmup)[0]


def median_seconds(fn: Callable, repeats: int, warmup: int = 0) -> float:
    return statistics.median(call_times(fn, repeats, warmup))
