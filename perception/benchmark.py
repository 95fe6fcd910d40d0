"""Forward throughput and peak memory of InternViT, per attention kernel and dtype.

Each measurement runs in a fresh subprocess on CPU so that its peak resident memory is its own
(Linux ``/proc/self/clear_refs`` resets the high-water mark after the model is built); on CUDA the
allocator's peak is used. Library code for ``tools/benchmark.py``.
"""
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import torch
from mmengine.logging import print_log

from .checkpoint.loader import DTYPE_NAMES as DTYPES
from .layers.vision_transformer import ARCH_PRESETS, parse_arch



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


def _rss_kb(field: str) -> int:
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith(field + ':'):
                return int(line.split()[1])
    return 0


def _reset_peak_rss():
    try:
        with open('/proc/self/clear_refs', 'w') as f:
            f.write('5')
        return True
    except OSError:
        return False


def build_random(arch: dict, dtype: torch.dtype, device: str, attn_backend: str):
    """Random weights created directly in ``dtype`` (never materialised in fp32 first)."""
    from .models.internvit import InternViT
    with torch.device('meta'):
        model = InternViT(arch, attn_backend=attn_backend, frozen=True)
    model.to_empty(device=device)
    gen = torch.Generator(device=device).manual_seed(0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.ndim == 1:
                p.copy_(torch.ones_like(p) if 'norm' in name else torch.full_like(p, 0.1))
            else:
                p.normal_(0, 0.02, generator=gen)
    model.to(dtype)
    model.eval()
    return model


def measure(preset: str, layers: int, size, batch: int, dtype: str, backend: str, device: str,
            warmup: int, repeats: int, amp: bool, part: str = 'model') -> dict:
    """One measurement in this process. ``part``: 'model' (the forward) or 'attention' (the kernel
    alone on q, k, v of the model's shapes)."""
    from .layers.attention import attention_kernel, resolve_attn_backend
    arch = bench_arch(preset, layers)
    wdtype = torch.float32 if amp else DTYPES[dtype]
    h, w = size
    tokens = (h // arch['patch_size']) * (w // arch['patch_size']) + 1
    autocast = torch.autocast(torch.device(device).type, dtype=DTYPES[dtype], enabled=amp)
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
            out = forward()
        if cuda:
            torch.cuda.synchronize()
        return out

    base_kb = _rss_kb('VmRSS')
    if cuda:
        torch.cuda.reset_peak_memory_stats()
        base_cuda = torch.cuda.memory_allocated()
    else:
        _reset_peak_rss()
    times = []
    for i in range(warmup + repeats):
        t0 = time.perf_counter()
        run()
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    med = statistics.median(times)
    res = dict(preset=preset if part == 'model' else f'{preset} attention', part=part,
               layers=arch['num_layers'] if part == 'model' else 0, size=f'{h}x{w}', batch=batch,
               tokens=tokens, dtype=dtype + ('-amp' if amp else ''), backend=resolved,
               median_s=med, min_s=min(times), img_per_s=batch / med, repeats=repeats,
               threads=torch.get_num_threads())
    if cuda:
        res['peak_mb'] = (torch.cuda.max_memory_allocated() - base_cuda) / 2 ** 20
    else:
        res['peak_mb'] = (_rss_kb('VmHWM') - base_kb) / 1024
    if part == 'attention':
        res['gflop'] = 4 * batch * tokens * tokens * arch['embed_dims'] / 1e9
    else:
        res['gflop'] = forward_flops(arch, tokens, batch) / 1e9
    res['tflops'] = res['gflop'] / 1e3 / med
    return res


def forward_flops(arch: dict, tokens: int, batch: int = 1) -> float:
    """Multiply-adds x 2 of the blocks: linears plus the two attention matmuls."""
    C, F_, L, N = arch['embed_dims'], arch['feedforward_channels'], arch['num_layers'], tokens
    per_block = 2 * N * (3 * C * C + C * C + 2 * C * F_) + 4 * N * N * C
    return float(batch * L * per_block)


def matmul_floor(arch: dict, tokens: int, batch: int, dtype: str, device: str, repeats: int = 5) -> dict:
    """Time of the block's four weight matmuls (qkv, proj, fc1, fc2) and of the attention matmuls
    done as plain batched matmuls, in ``dtype``: what a forward cannot beat."""
    dt = DTYPES[dtype]
    C, F_, H = arch['embed_dims'], arch['feedforward_channels'], arch['num_heads']
    M = batch * tokens
    g = torch.Generator(device=device).manual_seed(0)
    shapes = [(C, 3 * C), (C, C), (C, F_), (F_, C)]
    mats = [(torch.randn(M, k, device=device, generator=g).to(dt),
             torch.randn(k, n, device=device, generator=g).to(dt)) for k, n in shapes]
    q = torch.randn(batch * H, tokens, C // H, device=device, generator=g).to(dt)
    cuda = device.startswith('cuda')

    def once():
        for a, b in mats:
            a @ b
        s = q @ q.transpose(1, 2)
        s @ q
        if cuda:
            torch.cuda.synchronize()

    once()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        once()
        times.append(time.perf_counter() - t0)
    med = statistics.median(times)
    flop = forward_flops(dict(arch, num_layers=1), tokens, batch)
    return dict(dtype=dtype, block_matmul_s=med, tflops=flop / med / 1e12)


def measure_in_subprocess(**kw) -> dict:
    """Run :func:`measure` in a fresh interpreter (clean peak-RSS accounting)."""
    code = ('import json,sys; from perception.benchmark import measure; '
            'print("@@" + json.dumps(measure(**json.loads(sys.argv[1]))))')
    env = dict(os.environ)
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



# ----------------------------------------------------------------------------- export latency
def _interleaved_medians(fns: Sequence, repeats: int, warmup: int) -> List[float]:
    """Median ms of each function, timed in turn (a, b, a, b, ...) so that load drifts hit both."""
    for _ in range(warmup):
        for fn in fns:
            fn()
    ts = [[] for _ in fns]
    for _ in range(repeats):
        for i, fn in enumerate(fns):
            t = time.perf_counter()
            fn()
            ts[i].append((time.perf_counter() - t) * 1e3)
    return [statistics.median(t) for t in ts]


def benchmark_export(segmentor, name: str, size: int = 504, repeats: int = 10, warmup: int = 2,
                     work_dir: Optional[str] = None, keep: bool = False) -> Dict:
    """Export ``segmentor`` to ONNX, then time one ``size`` x ``size`` forward (batch 1, fp32) in
    PyTorch (``encode_decode``) and in onnxruntime, interleaved in this process. Medians in ms;
    ``load_avg`` (1-minute load average) tells whether something else competed for the CPU."""
    from .deploy.bundle import open_session
    from .export import INPUT_NAME, ONNX_FILE, export_model, reference_logits
    p = segmentor.backbone.patch_size
    size = int(round(size / p)) * p
    own = work_dir is None
    work = Path(work_dir or tempfile.mkdtemp(prefix='perception-bench-'))
    try:
        t = time.perf_counter()
        m = export_model(segmentor, work / name, ('onnx',), slide=((size, size), (size, size)),
                         verify_sizes=[(1, size, size)])
        export_s = time.perf_counter() - t
        x = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(1))
        sess = open_session(work / name / ONNX_FILE)
        xn = x.numpy()
        load = os.getloadavg()[0]
        torch_ms, ort_ms = _interleaved_medians([lambda: reference_logits(segmentor, x),
                                                 lambda: sess.run(None, {INPUT_NAME: xn})], repeats, warmup)
        load = max(load, os.getloadavg()[0])
        params = sum(t.numel() for n, t in segmentor.named_parameters() if not n.startswith('auxiliary_head.'))
        row = dict(name=name, params_m=params / 1e6, size=size, export_s=export_s, torch_ms=torch_ms,
                   ort_ms=ort_ms, threads=torch.get_num_threads(), load_avg=load,
                   max_abs_diff=m['verification']['onnxruntime'][0]['max_abs_diff'],
                   onnx_mib=sum(v['bytes'] for k, v in m['files'].items() if k.startswith(ONNX_FILE)) / 2 ** 20)
        print_log(f'{name}: PyTorch {torch_ms:.1f} ms, onnxruntime {ort_ms:.1f} ms (median of {repeats})',
                  logger='current')
        return row
    finally:
        if own and not keep:
            shutil.rmtree(work, ignore_errors=True)


def latency_table(rows: Sequence[Dict]) -> str:
    """Markdown table of :func:`benchmark_export` rows."""
    lines = ['| segmentor | params (M) | input | PyTorch fp32 (ms) | onnxruntime fp32 (ms) | speed-up | '
             'max abs logit diff | export (s) | ONNX size (MiB) |',
             '|---|---|---|---|---|---|---|---|---|']
    if any(r.get('load_avg', 0) > (os.cpu_count() or 1) * 0.75 + 0.5 for r in rows):
        print_log('the load average was high during the benchmark: other processes competed for the CPU',
                  logger='current', level=30)
    for r in rows:
        lines.append(f"| {r['name']} | {r['params_m']:.1f} | 1x3x{r['size']}x{r['size']} | {r['torch_ms']:.1f} | "
                     f"{r['ort_ms']:.1f} | {r['torch_ms'] / r['ort_ms']:.2f}x | {r['max_abs_diff']:.1e} | "
                     f"{r['export_s']:.0f} | {r['onnx_mib']:.0f} |")
    return '\n'.join(lines)


__all__ = ['ARCH_PRESETS', 'bench_arch', 'measure', 'measure_in_subprocess', 'matmul_floor',
           'forward_flops', 'format_table', 'benchmark_export', 'latency_table']


# ----------------------------------------------------------------------------- linear probing
def plain_probe_epoch_seconds(cfg, device='cpu', max_images: Optional[int] = None) -> float:
    """One epoch of the plain probe: the frozen backbone reruns on every training image (train
    pipeline), then one head steps. The cost the cached sweep avoids."""
    import copy

    from mmengine.registry import init_default_scope
    from mmpretrain.registry import DATASETS
    from torch import nn

    from .classification.fast_probe import build_frozen_backbone, preprocess
    init_default_scope('mmpretrain')
    backbone = build_frozen_backbone(cfg, device)
    dataset = DATASETS.build(copy.deepcopy(cfg.train_dataloader.dataset))
    C = backbone.embed_dims
    head = nn.Sequential(nn.BatchNorm1d(2 * C, eps=1e-6), nn.Linear(2 * C, int(cfg.model.head.num_classes)))
    opt = torch.optim.SGD(head.parameters(), lr=0.01, momentum=0.9, nesterov=True)
    bs = int(cfg.train_dataloader.batch_size)
    n = len(dataset) if max_images is None else min(max_images, len(dataset))
    t0 = time.perf_counter()
    for s in range(0, n, bs):
        items = [dataset[j] for j in range(s, min(s + bs, n))]
        x = preprocess(cfg, [it['inputs'] for it in items]).to(device)
        y = torch.tensor([int(it['data_samples'].gt_label) for it in items])
        with torch.no_grad():
            fmap, cls = backbone(x)[-1]
        feat = torch.cat([cls, fmap.flatten(2).mean(-1)], -1)
        loss = nn.functional.cross_entropy(head(feat), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return (time.perf_counter() - t0) * len(dataset) / n
