"""InternViT + ViT-Adapter + UperNet at real size on this CPU: peak memory of one training step and the
adapter's added forward time over the frozen ViT alone. Random weights, nothing downloaded.

    python tools/benchmark_adapter.py [--arch 6b] [--depth N ...] [--img 512] [--batch 1 2] [--channels 1536]
                                      [--repeats 3] [--parts memory speed] [--json OUT.json]

The recipe is InternVL-MMDetSeg's frozen-6B ADE20K one (patch 16, interactions in four equal groups,
cffn / deform ratio 0.25, ``with_cp``, UperNet and auxiliary FCN with ``--channels``, 150 classes),
the ViT held in bf16 and never built in fp32, the adapter and heads fp32 under bf16 autocast.

* memory: per depth and batch, in a fresh process, ONE step (forward, backward, AdamW update) and its
  peak resident set (VmHWM), with what the peak holds: weights, gradients, AdamW state, the rest.
* speed: per depth, in a fresh process, the adapter's forward and the same ViT blocks alone, timed in
  turn (medians of ``--repeats``, batch 1, ``torch.no_grad``), with the adapter's parts timed by
  forward hooks: the deformable attention (its CPU ``grid_sample`` path) and its share.

``--depth`` runs a shallower ViT of the same width (quick checks: 4 and 8 blocks of the 6B width fit
where the full model does not); with two or more depths the figures at the arch's full depth are
extrapolated linearly in the block count and printed as an ESTIMATE. The work is ``benchmarks/adapter.py``.
"""
import argparse
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from perception.common.cli import positive_int, run_main  # noqa: E402  (torch-free)


def arch_arg(text: str):
    """``--arch``: a preset name ('6b', '300m', ...) or a JSON dict of the arch keys."""
    if text.lstrip().startswith('{'):
        try:
            return json.loads(text)
        except json.JSONDecodeError as e:
            raise argparse.ArgumentTypeError(f'--arch {text!r}: not a JSON dict ({e.msg})')
    return text


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--arch', type=arch_arg, default='6b', help="preset ('6b', '300m', ...) or a JSON arch dict")
    p.add_argument('--depth', type=positive_int, nargs='+', default=None,
                   help='ViT blocks (default: the arch\'s); two or more: extrapolated to the full depth')
    p.add_argument('--img', type=positive_int, default=512, help='square input side (a multiple of 32)')
    p.add_argument('--batch', type=positive_int, nargs='+', default=[1], help='training-step batch sizes')
    p.add_argument('--channels', type=positive_int, default=1536, help='UperNet and auxiliary FCN channels')
    p.add_argument('--classes', type=positive_int, default=150)
    p.add_argument('--repeats', type=positive_int, default=3, help='timed forwards of each (after one warm-up)')
    p.add_argument('--parts', nargs='+', choices=['memory', 'speed'], default=['memory', 'speed'])
    p.add_argument('--malloc', nargs='+', choices=['default', 'keep'], default=['default', 'keep'],
                   help="speed: glibc malloc as it is, and/or 'keep' (MALLOC_MMAP_MAX_=0: freed memory is reused, "
                        'not handed back; benchmarks/adapter.py MALLOC_ENV says why); memory: always default')
    p.add_argument('--json', metavar='OUT.json', help='also write the results to this new file (never overwritten)')
    args = p.parse_args(argv)
    if args.json and os.path.exists(args.json):
        raise ValueError(f'--json {args.json}: the file exists (this tool writes only new files)')
    from benchmarks.adapter import (bench_arch, has_weights_dtype, in_subprocess, linear_estimate, memory_table,
                                    model_state, speed_table)
    from benchmarks.machine import machine_line
    from perception.models.adapter import SIZE_DIVISOR
    if args.img % SIZE_DIVISOR:
        raise ValueError(f'--img {args.img}: InternViTAdapter needs a multiple of {SIZE_DIVISOR}')
    full = bench_arch(args.arch)  # validates --arch in one line
    depths = sorted(set(args.depth or [full['num_layers']]))
    if depths[0] < 4:
        raise ValueError(f'--depth {depths[0]}: the adapter splits the blocks into four interactions, so at least 4')
    load0 = os.getloadavg()
    state = model_state(args.arch, None, args.img, args.channels, args.classes)
    res = dict(machine=machine_line(), load_avg_start=load0[:3], arch=args.arch, full_depth=full['num_layers'],
               weights_dtype_arg=has_weights_dtype(), full_size_state=state, memory=[], speed=[])
    if 'memory' in args.parts:
        for d in depths:
            for b in args.batch:
                res['memory'].append(in_subprocess('train_step', arch=args.arch, depth=d, img=args.img, batch=b,
                                                   channels=args.channels, num_classes=args.classes))
    if 'speed' in args.parts:
        for m in args.malloc:
            for d in depths:
                res['speed'].append(in_subprocess('forward_times', malloc=m, arch=args.arch, depth=d, img=args.img,
                                                  repeats=args.repeats))
    res['load_avg_end'] = os.getloadavg()[:3]
    est = full['num_layers'] not in depths and len(depths) > 1
    if est:  # the adapter's parameters and work do not grow with the block count (four interactions at any depth)
        L, deep = full['num_layers'], depths[-1]
        per_block = (state['vit_weights_gib'] - model_state(args.arch, deep, args.img, args.channels,
                                                            args.classes)['vit_weights_gib']) / (L - deep)
        res['estimate'] = dict(depth=L, from_depths=[depths[0], deep], peak_gib={}, peak_weights_only_gib={})
        for b in args.batch:
            rows = [r for r in res['memory'] if r['batch'] == b]
            if rows:
                res['estimate']['peak_gib'][b] = linear_estimate(rows, 'peak_gib', L)
                res['estimate']['peak_weights_only_gib'][b] = rows[-1]['peak_gib'] + (L - deep) * per_block
        for m in args.malloc:
            rows = [r for r in res['speed'] if r['malloc'] == m]
            if rows:
                vit = linear_estimate(rows, 'vit_alone_s', L)
                ad = vit + rows[-1]['added_s']
                res['estimate'].setdefault('speed', {})[m] = dict(vit_alone_s=vit, adapter_s=ad,
                                                                  added_pct=100 * (ad - vit) / vit)
    name = args.arch if isinstance(args.arch, str) else f"width {full['embed_dims']}"
    print(f"# measured on: {res['machine']}")
    print(f"# load average (1, 5, 15 min) at start {', '.join(f'{x:.2f}' for x in load0)}; at end "
          f"{', '.join(f'{x:.2f}' for x in res['load_avg_end'])}")
    print(f"InternViT {name} ({full['embed_dims']} wide, {full['num_layers']} blocks) + InternViTAdapter + UperNet "
          f"(channels {args.channels}, aux FCN {args.channels}, {args.classes} classes), {args.img}x{args.img}; ViT "
          'weights bf16, adapter and heads fp32, bf16 autocast')
    if res['weights_dtype_arg']:
        print("InternViTAdapter(weights_dtype='bf16') used (built on meta, the ViT materialised in bf16)")
    else:
        print('NOTE: InternViTAdapter has no weights_dtype argument in this checkout: the benchmark builds it on '
              'meta and materialises the ViT part in bf16 itself (the same dtypes weights_dtype=\'bf16\' would give)')
    print(f"At the full depth, exactly (meta build): ViT {state['vit_params_m']:.1f} M parameters = "
          f"{state['vit_weights_gib']:.2f} GiB in bf16; trainable {state['trainable_params_m']:.1f} M = "
          f"{state['trainable_state_gib']:.2f} GiB as fp32 weights + gradients + AdamW state; together "
          f"{state['vit_weights_gib'] + state['trainable_state_gib']:.2f} GiB before any activation")
    if res['memory']:
        print(f"\n## One training step (forward + backward + AdamW update), peak RSS; {res['memory'][0]['threads']} "
              'threads, each row a fresh process')
        print(memory_table(res['memory']))
        if any(r['bn_eval'] for r in res['memory']):
            print('(batch 1: the heads\' BatchNorms on their running statistics: UperNet\'s scale-1 pooling branch '
                  'leaves one value per channel, which BatchNorm cannot train on; the memory is the same step\'s)')
    if res['speed']:
        print(f"\n## Forward, batch 1, bf16 autocast, no_grad: medians of {args.repeats} (after a warm-up), the "
              'ViT alone and the adapter timed in turn; the parts by forward hooks inside the adapter\'s calls')
        print(speed_table(res['speed']))
    if est:
        e = res['estimate']
        print(f"\nESTIMATE (not measured) at {e['depth']} blocks from depths {e['from_depths'][0]} and "
              f"{e['from_depths'][1]}:")
        for b, v in e['peak_gib'].items():
            print(f"  ESTIMATE peak RSS of one step, batch {b}: {v:.1f} GiB linear in the block count; "
                  f"{e['peak_weights_only_gib'][b]:.1f} GiB adding only the blocks' bf16 weights to depth "
                  f"{e['from_depths'][1]}'s peak (a lower bound)")
        for m, sp in e.get('speed', {}).items():
            print(f"  ESTIMATE forward (malloc {m}): ViT alone {sp['vit_alone_s']:.2f} s (linear in the block count), "
                  f"adapter {sp['adapter_s']:.2f} s (+ the time depth {e['from_depths'][1]}'s adapter added: its work "
                  f"does not grow with the blocks), added {sp['added_pct']:+.1f}%")
    if args.json:
        from perception.common.files import write_bytes_atomic
        write_bytes_atomic(args.json, json.dumps(res, indent=1).encode())
        print(f'results written to {args.json}')
    return 0


if __name__ == '__main__':
    sys.exit(run_main(main))
