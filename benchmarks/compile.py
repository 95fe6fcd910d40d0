"""Compiled blocks (``compile_blocks``) against eager, InternVL's own layer and the matmul floor: one
real-width block, timed interleaved in this process (``tools/benchmark.py --compile``, ``tools/gpu_check.py``)."""
import time
from typing import Dict, List, Sequence

import torch

from perception.common.dtypes import torch_dtype
from perception.layers import Block

from .backbone import floor_fn, forward_flops
from .reference import OfficialStyleBlock
from .timing import interleaved_medians, synced
from .weights import fill_random_


def compile_comparison(arch: dict, size: int = 504, batch: int = 1, dtypes: Sequence[str] = ('bf16', 'fp32'),
                       device: str = 'cpu', repeats: int = 5, warmup: int = 1, backward: bool = True,
                       official: bool = True, attn_backend: str = 'sdpa') -> List[Dict]:
    """One real-width block, eager vs compiled (``compile_blocks``) vs the official-style layer and the
    block's matmul floor, timed interleaved in this process (medians).

    Per dtype: ``forward`` runs weights cast to the dtype without autograd (the frozen path);
    ``train`` runs forward+backward of fp32 weights under autocast to the dtype (the tuning path;
    plain fp32 for 'fp32').
    """
    C, H, F_ = arch['embed_dims'], arch['num_heads'], arch['feedforward_channels']
    tokens = (size // arch['patch_size']) ** 2 + 1
    flop = forward_flops(dict(arch, num_layers=1), tokens, batch)

    def sync(fn):
        return synced(fn, device)

    def new_block():
        return Block(C, H, F_, norm_type=arch['norm_type'], qkv_bias=arch['qkv_bias'],
                     qk_normalization=arch['qk_normalization'], attn_backend=attn_backend).to(device)

    rows = []
    for dtype in dtypes:
        dt = torch_dtype(dtype)
        torch.manual_seed(0)
        blk = new_block()
        fill_random_(blk.named_parameters())
        x32 = torch.randn(batch, tokens, C, device=device)
        # --- forward, weights in dtype, no autograd
        fblk = new_block()
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
        fns.append(sync(floor_fn(arch, tokens, batch, dtype, device)))
        names.append('matmul floor')
        with torch.no_grad():
            meds = interleaved_medians(fns, repeats, warmup)
        t = dict(zip(names, meds))
        row = dict(dtype=dtype, part='forward', tokens=tokens, batch=batch, compile_s=compile_s,
                   rel_diff=diff, flop=flop, **{f'{k} ms': v for k, v in t.items()})
        if 'official' in t:
            row['official_rel_diff'] = odiff
        rows.append(row)
        fblk = None  # frees its weights before the next dtype
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
        meds = interleaved_medians([sync(step(False)), sync(step('force'))], repeats, warmup)
        rows.append(dict(dtype=dtype + ('' if dtype == 'fp32' else '-autocast'), part='forward+backward',
                         tokens=tokens, batch=batch, compile_s=tcompile, flop=3 * flop,
                         **{'eager ms': meds[0], 'compiled ms': meds[1]}))
        blk = None
    return rows


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
