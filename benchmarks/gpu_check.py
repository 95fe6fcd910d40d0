"""The GPU checks in one place (library code of ``tools/gpu_check.py``).

* :func:`attention_kernels`: one real-width InternViT-6B block (3200 wide, 25 heads, MLP 12800) in
  bf16 with each attention kernel (math, SDPA, xformers): parity against the fp32 math block,
  forward and forward+backward time, TFLOP/s and MFU, and peak memory above the weights.
* :func:`full_forward`: the whole encoder eager and with ``compile_blocks``.
* :func:`fsdp_steps`: the 6B full-tuning FSDP config (``mmcfg/scale/``) at reduced depth on the
  GPUs of this machine through ``tools/dist_train.sh``, a few iterations on generated data: step
  time and peak memory from mmengine's log, beside the memory plan's prediction
  (:mod:`perception.memory_plan`) for the same model.
"""
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import torch

from .backbone import forward_flops
from .machine import cuda_peak_mb
from .timing import interleaved_medians, median_seconds, synced
from .weights import materialize_random

ROOT = Path(__file__).resolve().parents[1]
FSDP_6B = ROOT / 'mmcfg/scale/upernet_internvit-6b_fsdp-8xb2-80k_ade20k-504x504.py'


def attention_kernels(device: str = 'cuda', embed_dims: int = 3200, num_heads: int = 25, feedforward_channels: int = 12800,
                      tokens: int = 1297, batch: int = 4, backends: Sequence[str] = ('math', 'sdpa', 'xformers'),
                      warmup: int = 3, repeats: int = 10, peak_tflops: float = 989.0) -> List[Dict]:
    """One block per kernel, same weights, bf16; the reference is the fp32 math block."""
    from perception.layers import Block
    torch.manual_seed(0)
    ref_blk = Block(embed_dims, num_heads, feedforward_channels, attn_backend='math').to(device)
    with torch.no_grad():
        for name, p in ref_blk.named_parameters():
            if p.ndim > 1:
                p.normal_(0, embed_dims ** -0.5)
            elif 'gamma' in name:
                p.fill_(0.5)
    x = torch.randn(batch, tokens, embed_dims, device=device)
    with torch.no_grad():
        ref = ref_blk(x)
    state = ref_blk.state_dict()
    del ref_blk
    xb = x.to(torch.bfloat16)
    flop = forward_flops(dict(embed_dims=embed_dims, feedforward_channels=feedforward_channels, num_layers=1), tokens,
                         batch)
    rows = []
    for backend in backends:
        row = dict(backend=backend, width=embed_dims, tokens=tokens, batch=batch, device=str(device))
        try:
            blk = Block(embed_dims, num_heads, feedforward_channels, attn_backend=backend).to(device)
            blk.load_state_dict(state)
            blk.to(torch.bfloat16)
            with torch.no_grad():
                out = blk(xb)
        except (RuntimeError, ImportError, NotImplementedError) as e:
            row['error'] = str(e).splitlines()[0][:160]
            rows.append(row)
            continue
        row['rel_err'] = ((out.float() - ref).abs().max() / ref.abs().max()).item()

        def fwd():
            with torch.no_grad():
                blk(xb)

        def fwd_bwd():
            xg = xb.detach().requires_grad_(True)
            blk(xg).float().pow(2).mean().backward()
            blk.zero_grad(set_to_none=True)

        row['fwd_ms'] = median_seconds(synced(fwd, device), repeats, warmup) * 1e3
        row['fwd_bwd_ms'] = median_seconds(synced(fwd_bwd, device), repeats, warmup) * 1e3
        row['fwd_tflops'] = flop / row['fwd_ms'] / 1e9
        row['fwd_bwd_tflops'] = 3 * flop / row['fwd_bwd_ms'] / 1e9
        row['fwd_mfu'] = row['fwd_tflops'] / peak_tflops
        row['fwd_bwd_mfu'] = row['fwd_bwd_tflops'] / peak_tflops
        row['fwd_peak_mb'] = cuda_peak_mb(fwd, device)
        row['fwd_bwd_peak_mb'] = cuda_peak_mb(fwd_bwd, device)
        rows.append(row)
        blk = None  # free the block's memory before the next kernel's
    return rows


def attention_table(rows: List[Dict]) -> str:
    def f(v, fmt):
        return '-' if v is None else format(v, fmt)
    base = next((r for r in rows if r.get('backend') == 'math' and 'fwd_ms' in r), None)
    out = ['| kernel | max rel. error vs fp32 math | forward ms | fwd TFLOP/s (MFU) | forward peak MiB | '
           'fwd+bwd ms | fwd+bwd TFLOP/s (MFU) | fwd+bwd peak MiB | fwd speed vs math |',
           '|' + '---|' * 9]
    for r in rows:
        if 'error' in r:
            out.append(f"| {r['backend']} | not run: {r['error']} |" + ' |' * 7)
            continue
        speed = f"{base['fwd_ms'] / r['fwd_ms']:.2f}x" if base else '-'
        out.append(f"| {r['backend']} | {r['rel_err']:.1e} | {r['fwd_ms']:.2f} | {r['fwd_tflops']:.0f} "
                   f"({r['fwd_mfu']:.0%}) | {f(r['fwd_peak_mb'], '.0f')} | {r['fwd_bwd_ms']:.2f} | "
                   f"{r['fwd_bwd_tflops']:.0f} ({r['fwd_bwd_mfu']:.0%}) | {f(r['fwd_bwd_peak_mb'], '.0f')} | {speed} |")
    return '\n'.join(out)


def reduced_fsdp_config(out_dir: Path, layers: int, data_root: str, iters: int, config: Path = FSDP_6B) -> Path:
    """The 6B FSDP config with ``layers`` blocks (6B width), no pretrained weights, generated data."""
    from perception.layers.vision_transformer import parse_arch
    arch = dict(parse_arch('6b'), num_layers=layers, _delete_=True)
    step = max(layers // 4, 1)
    out_indices = tuple(min(layers - 1, step * (i + 1) - 1) for i in range(4))
    cfg = out_dir / f'fsdp_6b-width_{layers}-layers.py'
    cfg.write_text(f"""_base_ = ['{config}']
model = dict(backbone=dict(arch={arch!r}, out_indices={out_indices!r}, init_cfg=None))
optim_wrapper = dict(paramwise_cfg=dict(num_layers={layers}))
train_dataloader = dict(num_workers=8, dataset=dict(data_root='{data_root}'))
val_dataloader = dict(dataset=dict(data_root='{data_root}'))
test_dataloader = val_dataloader
train_cfg = dict(max_iters={iters}, val_interval=100000)
default_hooks = dict(logger=dict(interval=1), checkpoint=dict(interval=100000, save_last=False))
log_processor = dict(window_size=1)  # per-iteration times, not mmengine's 10-iteration mean
custom_hooks = []
""")
    return cfg


def fsdp_steps(work_dir: Path, layers: int = 8, iters: int = 6, gpus: int = 1, python: str = sys.executable) -> Dict:
    """Run the reduced FSDP config; returns median step time (s, iterations after the first two) and
    peak memory (MiB, mmengine's max_memory_allocated) per rank."""
    from perception.datasets.demo_data import make_demo_dataset
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    data = make_demo_dataset(work_dir / 'data', seed=0, num_train=32, num_val=2)
    cfg = reduced_fsdp_config(work_dir, layers, str(data), iters)
    env = dict(os.environ, PYTHON=python)
    run_dir = work_dir / f'run_{layers}-layers_{gpus}-gpus'
    if run_dir.exists():
        raise FileExistsError(f'{run_dir} exists: give gpu_check an empty --work-dir')
    proc = subprocess.run(['bash', str(ROOT / 'tools/dist_train.sh'), str(cfg), str(gpus), '--work-dir',
                           str(run_dir)], capture_output=True, text=True, env=env)
    (work_dir / 'train.log').write_text(proc.stdout + proc.stderr)
    if proc.returncode != 0:
        lines = proc.stderr.splitlines()
        rank0 = [ln for ln in lines if ln.startswith('[rank0]:')][-30:] or \
            [ln for ln in lines if 'Error' in ln and 'Build settings' not in ln][:10]
        raise RuntimeError(f'FSDP run failed ({cfg}; whole log: {work_dir / "train.log"}):\n' + '\n'.join(rank0))
    recs = []
    for f in sorted(run_dir.glob('*/vis_data/scalars.json')):
        recs += [json.loads(line) for line in open(f)]
    recs = [r for r in recs if 'time' in r and 'loss' in r]
    steady = recs[3:] or recs  # the first iterations include CUDA / cuDNN warm-up
    return dict(config=str(cfg), layers=layers, gpus=gpus, iters=len(recs),
                step_s=statistics.median(r['time'] for r in steady),
                data_s=statistics.median(r.get('data_time', 0.0) for r in steady),
                peak_mib=max(r.get('memory', 0) for r in recs), losses=[r['loss'] for r in recs])


def fsdp_prediction(config: str, gpus: int = 1, img: int = 504, batch: int = 2) -> Dict:
    from perception.memory_plan import measure_for_config, plan
    m = measure_for_config(config, img, batch, torch.bfloat16)
    row = next(r for r in plan(m['counts'], m['block_act'], m['head_act'], m['flops'], m['backbone_flops'],
                               m['num_layers'], [gpus], param_bytes=2) if r['strategy'] == 'FULL_SHARD')
    return dict(total_gib=row['total'], params_m=m['counts']['total'] / 1e6,
                flop_per_step=3 * m['flops'] + m['backbone_flops'])


def fsdp_table(runs, peak_tflops: float = 989.0) -> str:
    """``runs``: ``(fsdp_steps result, fsdp_prediction result)`` pairs."""
    out = ['| model | GPUs | parameters | step s (batch 2/GPU, 504x504) | of which data s | model TFLOP/s (MFU) | '
           'peak memory GiB | memory plan GiB | measured / plan |',
           '|' + '---|' * 9]
    for run, pred in runs:
        tflops = pred['flop_per_step'] / run['step_s'] / 1e12
        out.append(f"| 6B width, {run['layers']} blocks + pyramid + UperNet, FSDP FULL_SHARD bf16 + AC | "
                   f"{run['gpus']} | {pred['params_m']:.0f} M | {run['step_s']:.3f} | {run['data_s']:.3f} | "
                   f"{tflops:.0f} ({tflops / peak_tflops:.0%}) | {run['peak_mib'] / 1024:.2f} | {pred['total_gib']:.2f} | "
                   f"{run['peak_mib'] / 1024 / pred['total_gib']:.2f} |")
    return '\n'.join(out)


def full_forward(device: str = 'cuda', preset='6b', layers: Optional[int] = None, batch: int = 8,
                 size: int = 504, modes: Sequence = (False, 'force'), attn_backend: str = 'sdpa',
                 warmup: int = 2, repeats: int = 5, peak_tflops: float = 989.0) -> List[Dict]:
    """The whole encoder (random weights made directly in bf16 on the device, no autograd): forward
    time, TFLOP/s and MFU eager and with ``compile_blocks``, timed interleaved."""
    from perception.layers.vision_transformer import InternVisionTransformer, parse_arch
    arch = parse_arch(preset)
    if layers:
        arch['num_layers'] = layers
    with torch.device('meta'):
        model = InternVisionTransformer(arch, attn_backend=attn_backend)
    materialize_random(model, torch.bfloat16, device).requires_grad_(False)
    x = torch.randn(batch, 3, size, size, device=device, dtype=torch.bfloat16)
    tokens = (size // arch['patch_size']) ** 2 + 1
    flop = forward_flops(arch, tokens, batch)

    def runner(mode):
        def run():
            model.set_compile_blocks(mode)
            with torch.no_grad():
                model(x)
        return synced(run, device)

    fns, rows = [], []
    for mode in modes:
        t0 = time.perf_counter()
        runner(mode)()
        first_s = time.perf_counter() - t0
        fns.append(runner(mode))
        rows.append(dict(preset=preset if isinstance(preset, str) else f"{arch['embed_dims']}-wide", layers=arch['num_layers'], batch=batch, size=size, tokens=tokens,
                         compiled=bool(mode), first_call_s=first_s, peak_mb=cuda_peak_mb(runner(mode), device)))
    meds = interleaved_medians(fns, repeats, warmup)
    for r, ms in zip(rows, meds):
        r['ms'] = ms
        r['tflops'] = flop / ms / 1e9
        r['mfu'] = r['tflops'] / peak_tflops
        r['img_per_s'] = batch / ms * 1e3
    return rows


def full_forward_table(rows: List[Dict]) -> str:
    out = ['| model | batch x size | blocks | forward ms | images/s | TFLOP/s (MFU) | peak MiB above weights |'
           ' first call s |', '|' + '---|' * 8]
    for r in rows:
        out.append(f"| {r['preset']} {'compiled' if r['compiled'] else 'eager'} | {r['batch']} x {r['size']} | "
                   f"{r['layers']} | {r['ms']:.1f} | {r['img_per_s']:.1f} | {r['tflops']:.0f} ({r['mfu']:.0%}) | "
                   f"{'-' if r['peak_mb'] is None else format(r['peak_mb'], '.0f')} | {r['first_call_s']:.1f} |")
    return '\n'.join(out)
