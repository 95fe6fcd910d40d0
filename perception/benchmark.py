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



def machine_line(device: str = 'cpu') -> str:
    """Where and when a figure was measured, for the line every benchmark prints above its table: date,
    CPU model with family/model and the features that decide bf16 speed (a bf16 matmul is native with
    ``avx512_bf16`` or AMX, emulated on AVX2-only CPUs), usable cores, memory, torch and its threads;
    the GPU's name on CUDA."""
    import datetime
    import platform
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


# ----------------------------------------------------------------------------- compiled blocks
class OfficialStyleBlock(torch.nn.Module):
    """InternVL's own encoder layer as its release runs it without flash attention (the baseline of
    the compile comparison): RMSNorm casting to fp32 and back, q/k RMSNorm over the full width
    through a transpose-flatten, ``softmax((q * scale) k^T)`` in the activation dtype, GELU MLP,
    ``x + attn(norm1(x)) * ls1``. Loaded from a :class:`~perception.layers.block.Block` state dict."""

    def __init__(self, blk):
        super().__init__()
        self.heads = blk.attn.num_heads
        self.eps = blk.norm1.eps
        self.p = {k: v.detach() for k, v in blk.state_dict().items()}

    def _rms(self, x, w):
        dt = x.dtype
        x = x.to(torch.float32)
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)
        return w * x.to(dt)

    def _attn(self, x):
        p, B, N, C = self.p, *x.shape
        H = self.heads
        qkv = torch.nn.functional.linear(x, p['attn.qkv.weight'], p.get('attn.qkv.bias'))
        q, k, v = qkv.reshape(B, N, 3, H, C // H).permute(2, 0, 3, 1, 4).unbind(0)
        q = self._rms(q.transpose(1, 2).flatten(2, 3), p['attn.q_norm.weight']).view(B, N, H, -1).transpose(1, 2)
        k = self._rms(k.transpose(1, 2).flatten(2, 3), p['attn.k_norm.weight']).view(B, N, H, -1).transpose(1, 2)
        attn = ((q * (C // H) ** -0.5) @ k.transpose(-2, -1)).softmax(dim=-1)
        x = (attn @ v).transpose(1, 2).reshape(B, N, C)
        return torch.nn.functional.linear(x, p['attn.proj.weight'], p['attn.proj.bias'])

    def forward(self, x):
        p = self.p
        x = x + self._attn(self._rms(x, p['norm1.weight']).to(x.dtype)) * p['ls1.gamma']
        h = torch.nn.functional.linear(self._rms(x, p['norm2.weight']).to(x.dtype), p['mlp.fc1.weight'],
                                       p['mlp.fc1.bias'])
        h = torch.nn.functional.linear(torch.nn.functional.gelu(h), p['mlp.fc2.weight'], p['mlp.fc2.bias'])
        return x + h * p['ls2.gamma']


def compile_comparison(arch: dict, size: int = 504, batch: int = 1, dtypes: Sequence[str] = ('bf16', 'fp32'),
                       device: str = 'cpu', repeats: int = 5, warmup: int = 1, backward: bool = True,
                       official: bool = True, attn_backend: str = 'sdpa') -> List[Dict]:
    """One real-width block, eager vs compiled (``compile_blocks``) vs the official-style layer and the
    block's matmul floor, timed interleaved in this process (medians).

    Per dtype: ``forward`` runs weights cast to the dtype without autograd (the frozen path);
    ``train`` runs forward+backward of fp32 weights under autocast to the dtype (the tuning path;
    plain fp32 for 'fp32').
    """
    from .layers.block import Block
    cuda = device.startswith('cuda')
    C, H, F_ = arch['embed_dims'], arch['num_heads'], arch['feedforward_channels']
    tokens = (size // arch['patch_size']) ** 2 + 1
    flop = forward_flops(dict(arch, num_layers=1), tokens, batch)

    def sync(fn):
        def run():
            out = fn()
            if cuda:
                torch.cuda.synchronize()
            return out
        return run

    rows = []
    for dtype in dtypes:
        dt = DTYPES[dtype]
        torch.manual_seed(0)
        blk = Block(C, H, F_, norm_type=arch['norm_type'], qkv_bias=arch['qkv_bias'],
                    qk_normalization=arch['qk_normalization'], attn_backend=attn_backend).to(device)
        with torch.no_grad():
            for n, prm in blk.named_parameters():
                if prm.ndim == 1:
                    prm.copy_(torch.ones_like(prm) if 'norm' in n else torch.full_like(prm, 0.1))
                else:
                    prm.normal_(0, 0.02)
        x32 = torch.randn(batch, tokens, C, device=device)
        # --- forward, weights in dtype, no autograd
        fblk = Block(C, H, F_, norm_type=arch['norm_type'], qkv_bias=arch['qkv_bias'],
                     qk_normalization=arch['qk_normalization'], attn_backend=attn_backend).to(device)
        fblk.load_state_dict(blk.state_dict())
        fblk.to(dt).eval().requires_grad_(False)
        x = x32.to(dt)

        def eager():
            fblk.compile_blocks = False
            with torch.no_grad():
                return fblk(x)

        def compiled():
            fblk.compile_blocks = 'force'
            with torch.no_grad():
                return fblk(x)

        t0 = time.perf_counter()
        out_c = sync(compiled)()
        compile_s = time.perf_counter() - t0
        out_e = sync(eager)()
        scale = out_e.float().abs().max().item()
        diff = (out_c.float() - out_e.float()).abs().max().item() / scale
        fns = [sync(eager), sync(compiled)]
        names = ['eager', 'compiled']
        if official and arch['norm_type'] == 'rms_norm':  # the official-style layer is the 6B's
            off = OfficialStyleBlock(fblk)
            with torch.no_grad():
                odiff = (off(x).float() - out_e.float()).abs().max().item() / scale
            fns.append(sync(lambda: off(x)))
            names.append('official')
        fl = _floor_fn(arch, tokens, batch, dtype, device)
        fns.append(sync(fl))
        names.append('matmul floor')
        with torch.no_grad():
            meds = _interleaved_medians(fns, repeats, warmup)
        t = dict(zip(names, meds))
        row = dict(dtype=dtype, part='forward', tokens=tokens, batch=batch, compile_s=compile_s,
                   rel_diff=diff, flop=flop, **{f'{k} ms': v for k, v in t.items()})
        if 'official' in t:
            row['official_rel_diff'] = odiff
        rows.append(row)
        del fblk
        if not backward:
            continue
        # --- training step: fp32 weights, autocast to dtype, forward + backward
        blk.train()
        xt = x32.clone().requires_grad_(True)
        amp = torch.autocast(torch.device(device).type, dtype=dt, enabled=dtype != 'fp32')

        def step(mode):
            def run():
                blk.compile_blocks = mode
                with amp:
                    y = blk(xt)
                y.float().sum().backward()
                blk.zero_grad(set_to_none=True)
                xt.grad = None
            return run

        t0 = time.perf_counter()
        sync(step('force'))()
        tcompile = time.perf_counter() - t0
        meds = _interleaved_medians([sync(step(False)), sync(step('force'))], repeats, warmup)
        rows.append(dict(dtype=dtype + ('' if dtype == 'fp32' else '-autocast'), part='forward+backward',
                         tokens=tokens, batch=batch, compile_s=tcompile, flop=3 * flop,
                         **{'eager ms': meds[0], 'compiled ms': meds[1]}))
        del blk
    return rows


def _floor_fn(arch, tokens, batch, dtype, device):
    dt = DTYPES[dtype]
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


def format_compile_table(rows: List[Dict]) -> str:
    """Markdown: per dtype and part, eager / compiled / official / floor ms and the ratios."""
    lines = ['| dtype | part | eager ms | compiled ms | compiled speed-up | official ms | compiled vs official |'
             ' matmul floor ms | compiled / floor | eager / floor | compile s | max rel. diff compiled vs eager |',
             '|' + '---|' * 12]
    for r in rows:
        e, c = r['eager ms'], r['compiled ms']
        o, f = r.get('official ms'), r.get('matmul floor ms')
        lines.append(
            f"| {r['dtype']} | {r['part']} | {e:.1f} | {c:.1f} | {e / c:.2f}x | "
            f"{'' if o is None else f'{o:.1f}'} | {'' if o is None else f'{o / c:.2f}x'} | "
            f"{'' if f is None else f'{f:.1f}'} | {'' if f is None else f'{c / f:.2f}'} | "
            f"{'' if f is None else f'{e / f:.2f}'} | {r['compile_s']:.1f} | "
            f"{'' if 'rel_diff' not in r else format(r['rel_diff'], '.1e')} |")
    return '\n'.join(lines)


def train_step_memory(config: str, img: int = 504, batch: int = 2, layers: Optional[int] = None,
                      device: str = 'cpu', compute: str = 'auto', seed: int = 0) -> Dict:
    """Peak memory of ONE training step of ``config`` at real size with random weights: build (the
    config's ``weights_dtype`` backbone included), forward, backward, optimizer update of the trainable
    parameters. Returns GiB at each phase: the process's peak RSS (``VmHWM``) on a CPU,
    ``max_memory_allocated`` on a GPU, with the parts (backbone weights, trainable weights + grads +
    AdamW state) counted from the model.

    ``compute``: 'bf16' (autocast, the GPU recipe), 'fp32' (no autocast; a low-precision backbone
    computes in fp32 one module at a time, ``export.lowmem.fp32_compute``: for CPUs without native
    bf16, where emulated bf16 is many times slower; fp32 activations make it an upper bound), 'auto'
    (bf16 on CUDA or a CPU with native bf16, else fp32). ``layers``: a shallower backbone of the same
    width (for quick checks; the budget is measured at full depth)."""
    import contextlib

    from mmengine.optim import build_optim_wrapper
    from mmseg.registry import MODELS

    from .apis import _replace_syncbn, load_config, strip_pretrained
    from .engine.optim_wrapper import cpu_has_native_bf16
    from .export.lowmem import fp32_compute
    from .setup_env import register_all_modules
    register_all_modules()
    from mmengine.registry import init_default_scope
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample
    cfg = load_config(config)
    init_default_scope(cfg.get('default_scope', 'mmseg'))
    strip_pretrained(cfg.model)
    _replace_syncbn(cfg.model)
    if layers:
        arch = dict(parse_arch(cfg.model.backbone.arch), num_layers=int(layers))
        cfg.model.backbone.arch = arch
        n = int(layers)
        k = len(cfg.model.backbone.out_indices)  # the same number of taps, spread over the depth
        cfg.model.backbone.out_indices = tuple(min(n - 1, max(0, (i + 1) * n // k - 1)) for i in range(k))
    if compute == 'auto':
        compute = 'bf16' if device.startswith('cuda') or cpu_has_native_bf16() else 'fp32'
    cuda = device.startswith('cuda')
    gib = 2.0 ** 30

    def peak():
        return torch.cuda.max_memory_allocated() / gib if cuda else _rss_kb('VmHWM') / 2 ** 20
    torch.manual_seed(seed)
    t0 = time.perf_counter()
    before = peak()
    model = MODELS.build(cfg.model)
    model.init_weights()
    model.to(device).train()
    built = peak()
    bb = sum(p.numel() * p.element_size() for p in model.backbone.parameters())
    trainable = [p for p in model.parameters() if p.requires_grad]
    n_train = sum(p.numel() for p in trainable)
    wrapper = build_optim_wrapper(model, dict(type='OptimWrapper', optimizer=dict(cfg.optim_wrapper.optimizer)))
    g = torch.Generator().manual_seed(seed)
    nc = int(cfg.model.decode_head.num_classes)
    samples = []
    for _ in range(batch):
        s = SegDataSample()
        s.gt_sem_seg = PixelData(data=torch.randint(0, nc, (1, img, img), generator=g))
        s.set_metainfo(dict(img_shape=(img, img), ori_shape=(img, img), pad_shape=(img, img)))
        samples.append(s)
    data = dict(inputs=[torch.randint(0, 256, (3, img, img), dtype=torch.uint8, generator=g) for _ in range(batch)],
                data_samples=samples)
    low_bb = getattr(model.backbone, 'weights_dtype', None) is not None
    ctx = contextlib.ExitStack()
    if compute == 'bf16':
        ctx.enter_context(torch.autocast('cuda' if cuda else 'cpu', dtype=torch.bfloat16))
    elif low_bb:
        ctx.enter_context(fp32_compute(model.backbone))
    t1 = time.perf_counter()
    with ctx:
        d = model.data_preprocessor(data, True)
        losses = model(**d, mode='loss')
        loss, _ = model.parse_losses(losses)
    fwd = peak()
    t2 = time.perf_counter()
    wrapper.update_params(loss)
    if cuda:
        torch.cuda.synchronize()
    t3 = time.perf_counter()
    step = peak()
    return dict(config=str(config), img=img, batch=batch, device=device, compute=compute,
                layers=model.backbone.num_layers, backbone_dtype=str(next(model.backbone.parameters()).dtype),
                backbone_weights_gib=bb / gib, trainable_params_m=n_train / 1e6,
                trainable_state_gib=n_train * 4 * 4 / gib,  # fp32 weights + grads + AdamW exp_avg, exp_avg_sq
                start_gib=before, after_build_gib=built, after_forward_gib=fwd, after_step_gib=step,
                build_s=t1 - t0, forward_s=t2 - t1, backward_update_s=t3 - t2, loss=float(loss))
