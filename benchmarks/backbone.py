"""Forward throughput and peak memory of InternViT, per attention kernel and dtype (``tools/benchmark.py``).

Each measurement runs in a fresh subprocess on CPU so that its peak resident memory is its own
(Linux ``/proc/self/clear_refs`` resets the high-water mark after the model is built); on CUDA the
allocator's peak is used. Also: the FLOPs of a forward and the block's matmul floor.
"""
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Callable, Dict, List

import torch

from perception.common.dtypes import torch_dtype
from perception.layers.vision_transformer import parse_arch

from .machine import reset_peak_rss, rss_kb
from .timing import call_times, synced
from .weights import build_random

ROOT = Path(__file__).resolve().parents[1]


def bench_arch(preset: str, layers: int = None) -> dict:
    """``'6b-block'`` is the 6B's width with one block; ``layers`` overrides the depth of any preset."""
    if preset.endswith('-block'):
        arch = parse_arch(preset[:-len('-block')])
        arch['num_layers'] = 1
    else:
        arch = parse_arch(preset)
    if layers:
        arch['num_layers'] = layers
    return arch


def forward_flops(arch: dict, tokens: int, batch: int = 1) -> float:
    """Multiply-adds x 2 of the blocks: linears plus the two attention matmuls."""
    C, F_, L, N = arch['embed_dims'], arch['feedforward_channels'], arch['num_layers'], tokens
    per_block = 2 * N * (3 * C * C + C * C + 2 * C * F_) + 4 * N * N * C
    return float(batch * L * per_block)


def measure(preset: str, layers: int, size, batch: int, dtype: str, backend: str, device: str,
            warmup: int, repeats: int, amp: bool, part: str = 'model') -> dict:
    """One measurement in this process. ``part``: 'model' (the forward) or 'attention' (the kernel
    alone on q, k, v of the model's shapes)."""
    from perception.layers.attention import attention_kernel, resolve_attn_backend
    arch = bench_arch(preset, layers)
    wdtype = torch.float32 if amp else torch_dtype(dtype)
    h, w = size
    tokens = (h // arch['patch_size']) * (w // arch['patch_size']) + 1
    autocast = torch.autocast(torch.device(device).type, dtype=torch_dtype(dtype), enabled=amp)
    cuda = device.startswith('cuda')
    resolved = resolve_attn_backend(backend, device)
    if part == 'attention':
        H = arch['num_heads']
        q, k, v = (torch.randn(batch, tokens, H, arch['embed_dims'] // H, device=device, dtype=wdtype)
                   for _ in range(3))
        scale = (arch['embed_dims'] // H) ** -0.5

        def forward():
            return attention_kernel(q, k, v, scale, resolved)
    else:
        model = build_random(arch, wdtype, device, backend)
        x = torch.randn(batch, 3, h, w, device=device, dtype=wdtype)

        def forward():
            return model(x)

    def run():
        with torch.no_grad(), autocast:
            return forward()

    base_kb = rss_kb('VmRSS')
    if cuda:
        torch.cuda.reset_peak_memory_stats()
        base_cuda = torch.cuda.memory_allocated()
    else:
        reset_peak_rss()
    times = call_times(synced(run, device), repeats, warmup)
    med = statistics.median(times)
    res = dict(preset=preset if part == 'model' else f'{preset} attention', part=part,
               layers=arch['num_layers'] if part == 'model' else 0, size=f'{h}x{w}', batch=batch,
               tokens=tokens, dtype=dtype + ('-amp' if amp else ''), backend=resolved,
               median_s=med, min_s=min(times), img_per_s=batch / med, repeats=repeats,
               threads=torch.get_num_threads())
    if cuda:
        res['peak_mb'] = (torch.cuda.max_memory_allocated() - base_cuda) / 2 ** 20
    else:
        res['peak_mb'] = (rss_kb('VmHWM') - base_kb) / 1024
    if part == 'attention':
        res['gflop'] = 4 * batch * tokens * tokens * arch['embed_dims'] / 1e9
    else:
        res['gflop'] = forward_flops(arch, tokens, batch) / 1e9
    res['tflops'] = res['gflop'] / 1e3 / med
    return res


def floor_fn(arch: dict, tokens: int, batch: int, dtype: str, device: str) -> Callable:
    """One call: the block's four weight matmuls (qkv, proj, fc1, fc2) and the two attention matmuls
    done as plain batched matmuls, in ``dtype`` (random operands; no synchronisation)."""
    dt = torch_dtype(dtype)
    C, F_, H = arch['embed_dims'], arch['feedforward_channels'], arch['num_heads']
    M = batch * tokens
    g = torch.Generator(device=device).manual_seed(0)
    mats = [(torch.randn(M, k, device=device, generator=g).to(dt),
             torch.randn(k, n, device=device, generator=g).to(dt))
            for k, n in [(C, 3 * C), (C, C), (C, F_), (F_, C)]]
    q = torch.randn(batch * H, tokens, C // H, device=device, generator=g).to(dt)

    def once():
        for a, b in mats:
            a @ b
        (q @ q.transpose(1, 2)) @ q
    return once


def matmul_floor(arch: dict, tokens: int, batch: int, dtype: str, device: str, repeats: int = 5) -> dict:
    """Time of the block's matmuls (:func:`floor_fn`) in ``dtype``: what a forward cannot beat."""
    med = statistics.median(call_times(synced(floor_fn(arch, tokens, batch, dtype, device), device), repeats,
                                       warmup=1))
    flop = forward_flops(dict(arch, num_layers=1), tokens, batch)
    return dict(dtype=dtype, block_matmul_s=med, tflops=flop / med / 1e12)


def measure_in_subprocess(**kw) -> dict:
    """Run :func:`measure` in a fresh interpreter (clean peak-RSS accounting)."""
    code = ('import json,sys; from benchmarks.backbone import measure; '
            'print("@@" + json.dumps(measure(**json.loads(sys.argv[1]))))')
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get('PYTHONPATH')])))
    proc = subprocess.run([sys.executable, '-c', code, json.dumps(kw)], capture_output=True, text=True,
                          env=env)
    for line in proc.stdout.splitlines():
        if line.startswith('@@'):
            return json.loads(line[2:])
    raise RuntimeError(f'benchmark subprocess failed ({kw}):\n{proc.stderr[-3000:]}')


def format_table(rows: List[Dict], base: Dict = None) -> str:
    head = ('| preset | layers | size | batch | dtype | backend | median ms | img/s | TFLOP/s | peak MB |'
            ' speed vs first of its part |')
    lines = [head, '|' + '---|' * 11]
    for r in rows:
        ref = base or next(x for x in rows if x['part'] == r['part'] and x['size'] == r['size'])
        rel = ref['median_s'] / r['median_s']
        lines.append(f"| {r['preset']} | {r['layers']} | {r['size']} | {r['batch']} | {r['dtype']} | "
                     f"{r['backend']} | {r['median_s'] * 1e3:.1f} | {r['img_per_s']:.2f} | {r['tflops']:.3f} |"
                     f" {r['peak_mb']:.0f} | {rel:.2f}x |")
    return '\n'.join(lines)
