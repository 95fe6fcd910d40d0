"""PyTorch vs onnxruntime latency on CPU for exported segmentors, side by side in one run.

    python tools/benchmark_export.py                       # tiny demo UperNet and a 300M UperNet, 504x504
    python tools/benchmark_export.py --models tiny --size 504 --repeats 10

Each segmentor is built with random weights (latency does not depend on them), exported to ONNX with the
parity check, then one batch-1 forward is timed in PyTorch (mmseg's ``encode_decode``, fp32) and in
onnxruntime (fp32, CPU provider) in the same process; the table gives medians. 'tiny' is
mmcfg/demo/upernet_internvit-tiny_*.py; '300m' is InternViT-300M + pyramid + UperNet with 1024 channels
(mmcfg/internvit/upernet_internvit-300m-frozen_8xb2-80k_ade20k-504x504.py).
"""
import argparse
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from perception.common.cli import run_main, non_negative_int, positive_int  # noqa: E402  (torch-free)

MODELS = {
    'tiny': ROOT / 'mmcfg/demo/upernet_internvit-tiny_1xb8-1k_demo-shapes-112x112.py',
    '300m': ROOT / 'mmcfg/internvit/upernet_internvit-300m-frozen_8xb2-80k_ade20k-504x504.py',
}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--models', nargs='+', default=['tiny', '300m'], choices=sorted(MODELS))
    p.add_argument('--size', type=positive_int, default=504)
    p.add_argument('--repeats', type=positive_int, default=5)
    p.add_argument('--warmup', type=non_negative_int, default=1)
    p.add_argument('--threads', type=positive_int, default=None, help='torch threads (default: torch\'s choice)')
    p.add_argument('--work-dir', default=None, help='keep the exported bundles here (default: a temp folder)')
    args = p.parse_args(argv)
    import torch

    from benchmarks.export import benchmark_export, latency_table
    from benchmarks.machine import machine_line
    from perception.inference import init_segmentor
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = []
    for name in args.models:
        model = init_segmentor(str(MODELS[name]), None, 'cpu', {'model.backbone.init_cfg': None})
        rows.append(benchmark_export(model, f'upernet-{name}', args.size, args.repeats, args.warmup,
                                     work_dir=args.work_dir))
        del model
    import onnxruntime
    print(f'\nCPU, torch {torch.__version__} ({torch.get_num_threads()} threads), onnxruntime '
          f'{onnxruntime.__version__}; medians of {args.repeats} interleaved runs after {args.warmup} '
          f'warm-up; highest 1-min load average {max(r["load_avg"] for r in rows):.1f} on {os.cpu_count()} '
          'cores\n')
    print(latency_table(rows))
    print(f'\n# measured on: {machine_line()}')
    return 0


if __name__ == '__main__':
    sys.exit(run_main(main))
