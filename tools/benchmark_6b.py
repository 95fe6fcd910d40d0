"""The real-size InternViT-6B on this machine: load time, bf16 forward time and peak memory.

    python tools/benchmark_6b.py [--workdir DIR] [--formats A B] [--sizes 224 448] [--repeats 2] [--compile]

First writes random bf16 weights of the real shapes (5.9 B parameters, 11.8 GB) as format A
(``intern_vit_6b_224px.pth``, under ``module``) and format B (the Hugging Face 224px repo: two
``pytorch_model-*.bin`` shards, index json, config.json) and format S (the same in the layout of the
448px releases: three ``model-*.safetensors`` shards + ``model.safetensors.index.json``, read through
the ``safetensors`` library) to a temporary folder, then for each format
in a fresh process: ``perception.load_backbone`` (meta-device build, bf16 fill), forward at each size
in bf16 (frozen, SDPA), peak resident memory (VmHWM). Also times the block's bf16 matmuls at the
same token counts (the floor a forward cannot beat) and prints forward / floor.
"""
import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from perception.deploy.cli import run_main, positive_int  # noqa: E402  (torch-free)


def write_checkpoints(workdir: Path, formats):
    import torch
    from perception.models import InternViT
    with torch.device('meta'):
        meta = InternViT('6b')
    shapes = {k: v.shape for k, v in meta.state_dict().items()}
    g = torch.Generator().manual_seed(0)
    sd = {}
    t0 = time.perf_counter()
    for k, shape in shapes.items():
        t = torch.empty(shape, dtype=torch.bfloat16)
        if k.endswith(('norm1.weight', 'norm2.weight', 'q_norm.weight', 'k_norm.weight')):
            t.fill_(1)
        elif k.endswith('gamma'):
            t.fill_(0.1)
        else:
            t.normal_(0, 0.02, generator=g)
        sd[k] = t
    print(f'generated {sum(t.numel() for t in sd.values()) / 1e9:.2f} B bf16 parameters in '
          f'{time.perf_counter() - t0:.0f} s', flush=True)
    out = {}
    if 'A' in formats:
        t0 = time.perf_counter()
        p = workdir / 'intern_vit_6b_224px.pth'
        torch.save({'module': sd}, p)
        out['A'] = str(p)
        print(f'wrote format A {p} ({p.stat().st_size / 1e9:.2f} GB) in {time.perf_counter() - t0:.0f} s', flush=True)
    for fmt in [f for f in ('B', 'S') if f in formats]:
        t0 = time.perf_counter()
        d = workdir / ('InternViT-6B-224px' if fmt == 'B' else 'InternViT-6B-224px-safetensors')
        d.mkdir(exist_ok=True)
        hf = {'cls_token': 'embeddings.class_embedding', 'pos_embed': 'embeddings.position_embedding',
              'patch_embed.proj.weight': 'embeddings.patch_embedding.weight',
              'patch_embed.proj.bias': 'embeddings.patch_embedding.bias'}

        def hf_name(k):
            if k in hf:
                return hf[k]
            k = k.replace('blocks.', 'encoder.layers.', 1)
            return k[:-len('.gamma')] if k.endswith(('ls1.gamma', 'ls2.gamma')) else k
        names = list(sd)
        n = 2 if fmt == 'B' else 3
        parts = [names[i * len(names) // n:(i + 1) * len(names) // n] for i in range(n)]
        weight_map = {}
        for i, part in enumerate(parts):
            if fmt == 'B':
                fname = f'pytorch_model-0000{i + 1}-of-0000{n}.bin'
                torch.save({hf_name(k): sd[k] for k in part}, d / fname)
            else:  # streamed one tensor at a time (safetensors' save_file copies a whole shard first)
                from perception.checkpoint.io import LazyTensor, write_safetensors
                fname = f'model-0000{i + 1}-of-0000{n}.safetensors'
                write_safetensors(d / fname, {hf_name(k): LazyTensor.wrap(sd[k]) for k in part},
                                  metadata={'format': 'pt'})
            weight_map.update({hf_name(k): fname for k in part})
        index = 'pytorch_model.bin.index.json' if fmt == 'B' else 'model.safetensors.index.json'
        (d / index).write_text(json.dumps({'metadata': {}, 'weight_map': weight_map}))
        (d / 'config.json').write_text(json.dumps({
            'architectures': ['InternVisionModel'], 'hidden_size': 3200, 'num_attention_heads': 25,
            'intermediate_size': 12800, 'num_hidden_layers': 48, 'image_size': 224, 'patch_size': 14,
            'qkv_bias': False, 'qk_normalization': True, 'layer_norm_eps': 1e-6, 'initializer_factor': 0.1,
            'drop_path_rate': 0.0, 'use_flash_attn': True, 'torch_dtype': 'bfloat16'}))
        out[fmt] = str(d)
        print(f'wrote format {fmt} {d} in {time.perf_counter() - t0:.0f} s', flush=True)
    return out


def _vm(field):
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith(field + ':'):
                return int(line.split()[1]) / 2 ** 20  # GiB
    return 0.0


def run_one(path: str, sizes, repeats: int, compile_blocks: bool = False) -> dict:
    """In a fresh process: load, forward per size (eager, and compiled interleaved with it when
    ``compile_blocks``), peak RSS."""
    import torch
    import perception
    t0 = time.perf_counter()
    model = perception.load_backbone(path, frozen=True, dtype='bf16', attn_backend='sdpa')
    load_s = time.perf_counter() - t0
    res = {'path': path, 'load_s': load_s, 'rss_after_load_gib': _vm('VmRSS'), 'forward': {},
           'forward_compiled': {}, 'compile_s': {}}
    for s in sizes:
        x = torch.randn(1, 3, s, s, dtype=torch.bfloat16)
        modes = [False, 'force'] if compile_blocks else [False]
        times = {m: [] for m in modes}
        for m in modes:  # warm-up; the compiled one's first call compiles
            model.set_compile_blocks(m)
            t = time.perf_counter()
            with torch.no_grad():
                model(x)
            if m:
                res['compile_s'][s] = time.perf_counter() - t
        for _ in range(repeats):
            for m in modes:  # interleaved: load drifts hit both
                model.set_compile_blocks(m)
                t = time.perf_counter()
                with torch.no_grad():
                    model(x)
                times[m].append(time.perf_counter() - t)
        res['forward'][s] = statistics.median(times[False])
        if compile_blocks:
            res['forward_compiled'][s] = statistics.median(times['force'])
    res['peak_rss_gib'] = _vm('VmHWM')
    return res


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--workdir', help='where to write the checkpoints (default: a temp dir, removed after)')
    p.add_argument('--formats', nargs='+', default=['A', 'B', 'S'], choices=['A', 'B', 'S'])
    p.add_argument('--sizes', nargs='+', type=positive_int, default=[224, 448])
    p.add_argument('--repeats', type=positive_int, default=2)
    p.add_argument('--reuse', action='store_true', help='with --workdir: reuse checkpoints written by an earlier run')
    p.add_argument('--compile', action='store_true',
                   help='also time the forward with compile_blocks (interleaved with eager; compile time shown)')
    p.add_argument('--child', help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        print('@@' + json.dumps(run_one(args.child, args.sizes, args.repeats, args.compile)), flush=True)
        return
    from perception.benchmark import matmul_floor
    from perception.layers.vision_transformer import parse_arch
    tmp = Path(args.workdir or tempfile.mkdtemp(prefix='internvit6b-'))
    tmp.mkdir(parents=True, exist_ok=True)
    try:
        existing = {'A': tmp / 'intern_vit_6b_224px.pth', 'B': tmp / 'InternViT-6B-224px',
                    'S': tmp / 'InternViT-6B-224px-safetensors'}
        if args.reuse and all(existing[f].exists() for f in args.formats):
            paths = {f: str(existing[f]) for f in args.formats}
            print(f'reusing the checkpoints in {tmp}')
        else:
            paths = write_checkpoints(tmp, args.formats)
        arch = parse_arch('6b')
        floors = {}
        for s in args.sizes:
            tokens = (s // 14) ** 2 + 1
            fl = matmul_floor(arch, tokens, 1, 'bf16', 'cpu', repeats=3)
            floors[s] = fl['block_matmul_s'] * arch['num_layers']
        results = {}
        for fmt, path in paths.items():
            cmd = [sys.executable, __file__, '--child', path, '--sizes', *map(str, args.sizes),
                   '--repeats', str(args.repeats)] + (['--compile'] if args.compile else [])
            proc = subprocess.run(cmd, capture_output=True, text=True)
            line = next((ln for ln in proc.stdout.splitlines() if ln.startswith('@@')), None)
            if line is None:
                raise RuntimeError(f'format {fmt} run failed:\n{proc.stderr[-3000:]}')
            results[fmt] = json.loads(line[2:])
            for ln in proc.stdout.splitlines() + proc.stderr.splitlines():
                if 'loaded' in ln:
                    print(ln.strip()[:300])
        from perception.benchmark import machine_line
        print(f'\n# measured on: {machine_line()}')
        print('# InternViT-6B (5.9 B params, bf16)')
        print('| format | load s | RSS after load GiB | peak RSS GiB | ' +
              ' | '.join(f'fwd {s}px s | fwd/floor {s}' for s in args.sizes) + ' |')
        print('|---|---|---|---|' + '---|---|' * len(args.sizes))
        for fmt, r in results.items():
            cells = ' | '.join(f"{r['forward'][str(s)]:.1f} | {r['forward'][str(s)] / floors[s]:.2f}"
                               for s in args.sizes)
            print(f"| {fmt} | {r['load_s']:.1f} | {r['rss_after_load_gib']:.2f} | {r['peak_rss_gib']:.2f} | {cells} |")
        if args.compile:
            print('\n| format | ' + ' | '.join(f'{s}px eager s | compiled s | speed-up | compiled/floor | compile s'
                                                for s in args.sizes) + ' |')
            print('|---|' + '---|---|---|---|---|' * len(args.sizes))
            for fmt, r in results.items():
                cells = ' | '.join(
                    f"{r['forward'][str(s)]:.1f} | {r['forward_compiled'][str(s)]:.1f} | "
                    f"{r['forward'][str(s)] / r['forward_compiled'][str(s)]:.2f}x | "
                    f"{r['forward_compiled'][str(s)] / floors[s]:.2f} | {r['compile_s'][str(s)]:.0f}"
                    for s in args.sizes)
                print(f'| {fmt} | {cells} |')
        print('\nbf16 matmul floor (the 48 blocks\' matmuls alone): ' +
              ', '.join(f'{s}px {floors[s]:.1f} s' for s in args.sizes))
    finally:
        if not args.workdir:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == '__main__':
    sys.exit(run_main(main))
