"""Per-GPU memory and step time for full-parameter training of an InternViT-6B segmentor with FSDP.

    python tools/memory_plan.py [--config mmcfg/internvit/upernet_internvit-6b_8xb2-80k_ade20k-504x504.py]
                                [--gpus 8 16 32] [--gpu-mem 80] [--peak-tflops 989] [--mfu 0.4]

Parameter counts come from the config's segmentor built on the meta device; activation sizes are
measured on one real-width block (bf16, batch 2, 1297 tokens, run on this CPU) and on pyramid + heads
(meta); FLOPs are counted by torch's flop counter. Prints a markdown report (docs/scaling.md).
"""
import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from perception.common.cli import run_main, open_unit_float, positive_float, positive_int  # noqa: E402  (torch-free)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--config', default='mmcfg/internvit/upernet_internvit-6b_8xb2-80k_ade20k-504x504.py')
    p.add_argument('--gpus', type=positive_int, nargs='+', default=[8, 16, 32])
    p.add_argument('--gpu-mem', type=positive_float, default=74.5, help='GiB per GPU (80 GB = 74.5 GiB)')
    p.add_argument('--peak-tflops', type=positive_float, default=989.0, help='dense bf16 peak per GPU (H100 SXM: 989)')
    p.add_argument('--mfu', type=open_unit_float, default=0.4, help='assumed fraction of peak achieved')
    p.add_argument('--batch', type=positive_int, default=2)
    p.add_argument('--img', type=positive_int, default=504)
    p.add_argument('--fp32', action='store_true', help='no mixed precision: fp32 units and activations')
    args = p.parse_args(argv)
    import torch
    from perception.memory_plan import measure_for_config, plan
    dtype = torch.float32 if args.fp32 else torch.bfloat16
    m = measure_for_config(args.config, args.img, args.batch, dtype)
    counts, blk, heads, flops, bb_flops, tokens = (m['counts'], m['block_act'], m['head_act'], m['flops'],
                                                   m['backbone_flops'], m['tokens'])
    rows = plan(counts, blk, heads, flops, bb_flops, m['num_layers'], args.gpus, args.gpu_mem, args.peak_tflops,
                args.mfu, args.batch, param_bytes=4 if args.fp32 else 2)
    M = 1e6
    print(f'# Memory plan: {Path(args.config).name}, {args.img}x{args.img}, batch {args.batch} per GPU\n')
    print(f"Parameters (all trained): backbone {counts['backbone'] / M:.2f} M ({m['num_layers']} blocks {counts['blocks'] / M:.2f} M, "
          f"largest block {counts['largest_block'] / M:.2f} M), pyramid {counts.get('neck', 0) / M:.2f} M, UperNet "
          f"{counts['decode_head'] / M:.2f} M, auxiliary FCN {counts['auxiliary_head'] / M:.2f} M; total "
          f"{counts['total'] / M:.2f} M.\n")
    print(f"Measured activations (saved for backward, {'fp32' if args.fp32 else 'bf16'}): one block at {tokens} tokens x batch {args.batch}: "
          f"{blk['saved_bytes'] / 2**20:.1f} MiB (its input alone {blk['input_bytes'] / 2**20:.1f} MiB); pyramid + "
          f"UperNet + FCN: {heads['saved_bytes'] / 2**30:.2f} GiB (logits {heads['logits_shape']}).\n")
    print(f"Forward FLOPs per GPU step: {flops / 1e12:.2f} TFLOP (backbone {bb_flops / 1e12:.2f}); a training step "
          f"= 3 x forward + 1 recomputed backbone forward = {(3 * flops + bb_flops) / 1e12:.2f} TFLOP.\n")
    unit = 'fp32' if args.fp32 else 'bf16'
    print(f'| GPUs | sharding | fp32 weights | fp32 grads (+ DDP buckets) | AdamW state | gathered {unit} units | '
          'activations (as run) | activations (no ckpt) | total per GPU | fits | compute s | comm s | step s | img/s |')
    print('|' + '---|' * 14)
    for r in rows:
        print(f"| {r['gpus']} | {r['strategy']} | {r['weights']:.1f} | {r['grads']:.1f} | {r['optim']:.1f} | {r['gathered']:.1f} | "
              f"{r['acts']:.1f} | {r['acts_no_cp']:.1f} | **{r['total']:.1f}** | {'yes' if r['fits'] else 'NO'} | "
              f"{r['compute_s']:.2f} | {r['comm_s']:.2f} | {r['step_s']:.2f} | {r['imgs_per_s']:.1f} |")
    print(f"\nGiB per GPU ({args.gpu_mem} GiB available; 'fits' keeps 10% headroom). Inputs: {args.peak_tflops:.0f} TFLOP/s dense bf16 peak x MFU {args.mfu}; 300 GB/s "
          "per-GPU NVLink within a node of 8, 50 GB/s per GPU across nodes (400 Gb/s NIC per GPU); "
          "communication overlaps compute, so a step takes the larger of the two.")


if __name__ == '__main__':
    sys.exit(run_main(main))
