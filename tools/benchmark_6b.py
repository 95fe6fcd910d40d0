"""The real-size InternViT-6B on this machine: load time, bf16 forward time and peak memory.

    python tools/benchmark_6b.py [--workdir DIR] [--formats A B] [--sizes 224 448] [--repeats 2] [--compile]

First writes random bf16 weights of the real shapes (5.9 B parameters, 11.8 GB) as format A
(``intern_vit_6b_224px.pth``, under ``module``) and format B (the Hugging Face 224px repo: two
``pytorch_model-*.bin`` shards, index json, config.json) and format S (the same in the layout of the
448px releases: three ``model-*.safetensors`` shards + ``model.safetensors.index.json``, read through
the ``safetensors`` library) to a temporary folder, then for each format in a fresh process:
``perception.load_backbone`` (meta-device build, bf16 fill), forward at each size in bf16 (frozen,
SDPA), peak resident memory (VmHWM). Also times the block's bf16 matmuls at the same token counts (the
floor a forward cannot beat) and prints forward / floor. The work is ``benchmarks/load_6b.py``.
"""
import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from perception.common.cli import run_main, positive_int  # noqa: E402  (torch-free)


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
        from benchmarks.load_6b import run_one
        print('@@' + json.dumps(run_one(args.child, args.sizes, args.repeats, args.compile)), flush=True)
        return
    from benchmarks.backbone import matmul_floor
    from benchmarks.load_6b import write_checkpoints
    from benchmarks.machine import machine_line
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
