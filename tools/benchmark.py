"""Forward throughput and peak memory of InternViT per attention kernel and dtype, side by side.

    python tools/benchmark.py --preset 6b-block --size 504 --dtype fp32 bf16 --backend math sdpa
    python tools/benchmark.py --preset 300m --size 448 --dtype bf16 --amp --backend sdpa
    python tools/benchmark.py --compile --preset 6b --size 504 --dtype bf16 fp32   # eager vs compiled

``--preset`` is an InternViT preset ('6b', '6b-448px-v1.5', '300m', ...) or '<preset>-block' (its
width, one block); ``--layers`` overrides the depth. Weights are random, created directly in the
benchmark dtype. Every (dtype, backend) runs ``--repeats`` times in a fresh process (clean peak
memory); medians are reported, with the speed relative to the first row and the block's matmul floor.
"""
import argparse
import itertools
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from perception.common.cli import run_main, non_negative_int, positive_int, torch_device  # noqa: E402  (torch-free)
from benchmarks.backbone import bench_arch, format_table, matmul_floor, measure_in_subprocess  # noqa: E402


def parse_size(s):
    if 'x' in s:
        h, w = s.split('x')
        return int(h), int(w)
    return int(s), int(s)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--preset', default='6b-block')
    p.add_argument('--layers', type=positive_int, default=None)
    p.add_argument('--size', nargs='+', default=['504'], help='504 or HxW; several allowed')
    p.add_argument('--batch', type=positive_int, default=1)
    p.add_argument('--dtype', nargs='+', default=['fp32', 'bf16'], choices=['fp32', 'bf16', 'fp16'])
    p.add_argument('--amp', action='store_true',
                   help='low precision through autocast over fp32 weights (training path) instead of '
                        'weights cast to the dtype (frozen-backbone inference path)')
    p.add_argument('--backend', nargs='+', default=['math', 'sdpa'],
                   choices=['auto', 'math', 'sdpa', 'xformers'])
    p.add_argument('--device', type=torch_device, default='cuda' if torch.cuda.is_available() else 'cpu')
    p.add_argument('--warmup', type=non_negative_int, default=1)
    p.add_argument('--repeats', type=positive_int, default=5)
    p.add_argument('--part', nargs='+', default=['model'], choices=['model', 'attention'],
                   help="'attention' times the attention kernel alone on the model's q/k/v shapes")
    p.add_argument('--no-floor', action='store_true', help='skip the matmul-floor measurement')
    p.add_argument('--compile', action='store_true',
                   help='instead: one block of the preset, eager vs compile_blocks vs the official-style layer vs '
                        'the matmul floor, forward (weights in --dtype) and forward+backward (fp32 weights under '
                        'autocast), interleaved in one process; compile time and the compiled/eager difference')
    args = p.parse_args(argv)
    if args.compile:
        return compile_main(args)

    arch = bench_arch(args.preset, args.layers)
    from benchmarks.machine import machine_line
    print(f'# measured on: {machine_line(args.device)}')
    print(f'# {args.preset}: width {arch["embed_dims"]}, {arch["num_layers"]} layer(s), device {args.device}')
    rows = []
    for part, size, dtype, backend in itertools.product(args.part, args.size, args.dtype, args.backend):
        amp = args.amp and dtype != 'fp32'
        r = measure_in_subprocess(preset=args.preset, layers=args.layers, size=parse_size(size),
                                  batch=args.batch, dtype=dtype, backend=backend, device=args.device,
                                  warmup=args.warmup, repeats=args.repeats, amp=amp, part=part)
        rows.append(r)
        print(f"  {r['size']} {r['dtype']:9s} {r['backend']:8s} median {r['median_s'] * 1e3:9.1f} ms  "
              f"peak {r['peak_mb']:8.0f} MB", flush=True)
    print()
    print(format_table(rows))
    if not args.no_floor and 'model' in args.part:
        print()
        for size, dtype in itertools.product(args.size, args.dtype):
            tokens = next(r['tokens'] for r in rows if r['size'] == 'x'.join(map(str, parse_size(size))))
            fl = matmul_floor(arch, tokens, args.batch, dtype, args.device)
            floor_s = fl['block_matmul_s'] * arch['num_layers']
            for r in rows:
                if r['part'] == 'model' and r['tokens'] == tokens and r['dtype'].split('-')[0] == dtype:
                    print(f"floor {size} {dtype}: matmuls alone {floor_s * 1e3:.1f} ms "
                          f"({fl['tflops']:.2f} TFLOP/s); {r['dtype']} {r['backend']} forward / floor = "
                          f"{r['median_s'] / floor_s:.2f}")


def compile_main(args):
    from benchmarks.compile import compile_comparison, format_compile_table
    from benchmarks.machine import machine_line
    arch = bench_arch(args.preset if args.preset.endswith('-block') else args.preset + '-block')
    print(f'# measured on: {machine_line(args.device)}')
    for size in args.size:
        h, w = parse_size(size)
        if h != w:
            sys.exit(f'--compile: square sizes only, got {size}')
        rows = compile_comparison(arch, size=h, batch=args.batch, dtypes=args.dtype, device=args.device,
                                  repeats=args.repeats, warmup=args.warmup)
        print(f"\n# compile_blocks: one block {arch['embed_dims']} wide, {h}x{h} ({rows[0]['tokens']} tokens) x "
              f"batch {args.batch}, {args.device}; medians of {args.repeats} interleaved runs\n")
        print(format_compile_table(rows), flush=True)


if __name__ == '__main__':
    sys.exit(run_main(main))
