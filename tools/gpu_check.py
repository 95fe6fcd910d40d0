"""The GPU checks in one command; prints markdown tables ready for docs/benchmarks.md.

    python tools/gpu_check.py [--layers 8 16] [--iters 10] [--gpus 1] [--batch 4] [--skip-fsdp] [--skip-attention]
    make gpu-check

1. Attention kernels (math, SDPA, xformers) on one real InternViT-6B block (3200 wide, 1297 tokens =
   504x504) in bf16: parity with the fp32 math block, forward and forward+backward time, TFLOP/s and
   MFU against --peak-tflops, peak memory.
2. compile_blocks on the real 6B block (eager vs compiled vs the official-style layer vs the matmul
   floor, forward and forward+backward) and the whole 6B forward eager vs compiled: time and MFU.
3. The 6B full-tuning FSDP config (mmcfg/scale/upernet_internvit-6b_fsdp-*) at --layers blocks of the
   6B width, --iters iterations on generated data through tools/dist_train.sh: step time, peak memory
   and the memory plan's prediction for the same model.

Needs CUDA; `--device cpu --tiny` runs part 1 at a toy width (what the test suite does).
"""
import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from perception.common.cli import run_main, positive_float, positive_int  # noqa: E402  (torch-free)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--device', default='cuda')
    p.add_argument('--tiny', action='store_true', help='toy width (64, 4 heads, 17 tokens): a smoke run')
    p.add_argument('--batch', type=positive_int, default=4, help='attention check batch (1297 tokens each)')
    p.add_argument('--backends', nargs='+', default=['math', 'sdpa', 'xformers'],
                   choices=['math', 'sdpa', 'xformers'])
    p.add_argument('--repeats', type=positive_int, default=10)
    p.add_argument('--layers', type=positive_int, nargs='+', default=[8], help='FSDP check: blocks of the 6B width (one run each)')
    p.add_argument('--iters', type=positive_int, default=10, help='FSDP check: training iterations')
    p.add_argument('--gpus', type=positive_int, default=1, help='FSDP check: processes (one per GPU)')
    p.add_argument('--peak-tflops', type=positive_float, default=989.0, help='dense bf16 peak per GPU (H100 SXM: 989)')
    p.add_argument('--skip-attention', action='store_true')
    p.add_argument('--skip-fsdp', action='store_true')
    p.add_argument('--skip-compile', action='store_true',
                   help='skip eager vs compiled (compile_blocks) on the 6B block and the whole 6B forward')
    p.add_argument('--full-batch', type=positive_int, default=8, help='whole-6B forward: images of 504x504 per call')
    p.add_argument('--full-layers', type=positive_int, default=None, help='whole-6B forward: depth (default: the preset)')
    p.add_argument('--work-dir', default=None, help='FSDP check files (default: a temporary folder)')
    args = p.parse_args(argv)
    for k in ('batch', 'repeats', 'layers', 'iters', 'gpus'):
        for v in (getattr(args, k) if isinstance(getattr(args, k), list) else [getattr(args, k)]):
            if v < 1:
                p.error(f'--{k} must be >= 1, got {v}')
    return args


def main(argv=None):
    args = parse_args(argv)
    import torch

    from benchmarks import gpu_check
    cuda = args.device.startswith('cuda')
    if cuda and not torch.cuda.is_available():
        sys.exit('error: no CUDA GPU here (torch.cuda.is_available() is False); '
                 '`--device cpu --tiny --skip-fsdp` runs a smoke test of the attention part')
    if cuda:
        print(f'# GPU check: {torch.cuda.get_device_name()}, torch {torch.__version__}, CUDA {torch.version.cuda}\n')
    if not args.skip_attention:
        shape = dict(embed_dims=64, num_heads=4, feedforward_channels=128, tokens=17) if args.tiny else {}
        rows = gpu_check.attention_kernels(args.device, batch=args.batch, backends=args.backends,
                                           repeats=args.repeats, peak_tflops=args.peak_tflops, **shape)
        r0 = rows[0]
        print(f"## Attention kernels: one InternViT block, {r0['width']} wide, {r0['tokens']} tokens x batch "
              f"{r0['batch']}, bf16 (MFU vs {args.peak_tflops:.0f} TFLOP/s)\n")
        print(gpu_check.attention_table(rows) + '\n')
    if not args.skip_compile:
        from benchmarks.backbone import bench_arch
        from benchmarks.compile import compile_comparison, format_compile_table
        arch = dict(bench_arch('6b-block'), embed_dims=64, num_heads=4, feedforward_channels=128) \
            if args.tiny else bench_arch('6b-block')
        rows = compile_comparison(arch, size=504 if not args.tiny else 56, batch=args.batch, dtypes=('bf16',),
                                  device=args.device, repeats=args.repeats, warmup=3)
        print(f"## compile_blocks: one InternViT-6B block ({arch['embed_dims']} wide), batch {args.batch}, "
              'bf16 weights (forward) / fp32 weights under bf16 autocast (forward+backward), SDPA; '
              'interleaved medians\n')
        print(format_compile_table(rows) + '\n')
        from perception.layers.vision_transformer import parse_arch
        preset = dict(parse_arch('6b'), embed_dims=64, num_heads=4, feedforward_channels=128, img_size=56,
                      num_layers=2) if args.tiny else '6b'
        full = gpu_check.full_forward(args.device, preset, layers=args.full_layers,
                                      batch=args.full_batch, size=504 if not args.tiny else 56,
                                      peak_tflops=args.peak_tflops, repeats=args.repeats)
        print(f'## The whole encoder forward, bf16, SDPA (MFU vs {args.peak_tflops:.0f} TFLOP/s)\n')
        print(gpu_check.full_forward_table(full) + '\n', flush=True)
    if not args.skip_fsdp:
        if not cuda:
            sys.exit('error: the FSDP check runs on GPUs only (the CPU path is covered by tests/test_fsdp.py)')
        work = Path(args.work_dir or tempfile.mkdtemp(prefix='gpu_check_'))
        runs = []
        for layers in args.layers:
            run = gpu_check.fsdp_steps(work, layers, args.iters, args.gpus)
            runs.append((run, gpu_check.fsdp_prediction(run['config'], args.gpus)))
            print(f"FSDP run, {layers} blocks: {run['iters']} iterations, losses {run['losses'][0]:.3f} -> "
                  f"{run['losses'][-1]:.3f}", file=sys.stderr)
        print(f"## FSDP: {Path(gpu_check.FSDP_6B).name} at reduced depth, {args.iters} iterations, "
              'median step after 3 warm-up iterations\n')
        print(gpu_check.fsdp_table(runs, args.peak_tflops))


if __name__ == '__main__':
    sys.exit(run_main(main))
