"""The demo of ``make demo``.

    python tools/demo.py                  # segmentation: generate data, train tiny InternViT + UperNet on
                                          # CPU, evaluate, write overlays and the learning curve
    python tools/demo.py --backbone [CONFIG] [--image IMG] [--size H W] [--amp]
                                          # backbone only: feature shapes and the attention kernel used
"""
import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from perception.common.cli import run_main, positive_int  # noqa: E402  (torch-free)
from perception.demo import DEMO_CONFIG, run_backbone_demo, run_segmentation_demo  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--backbone', nargs='?', const='mmcfg/_base_/models/internvit_tiny.py', default=None,
                   metavar='CONFIG', help='run the backbone demo with this config instead')
    p.add_argument('--config', default=DEMO_CONFIG, help='segmentation demo config')
    p.add_argument('--work-dir', default='work_dirs/demo')
    p.add_argument('--data-root', default='data/demo_shapes')
    p.add_argument('--image', help='backbone demo: an image file (default: a generated test pattern)')
    p.add_argument('--size', type=positive_int, nargs=2, default=(224, 308), metavar=('H', 'W'))
    p.add_argument('--amp', action='store_true', help='backbone demo: bf16 autocast')
    prec = p.add_mutually_exclusive_group()
    prec.add_argument('--fp32', dest='fp32', action='store_const', const=True, default=None,
                      help='segmentation demo: train in fp32 (default: bf16 autocast where bf16 is native, '
                           'fp32 elsewhere)')
    prec.add_argument('--bf16', dest='fp32', action='store_const', const=False,
                      help='segmentation demo: train in bf16 autocast even where it is emulated')
    args = p.parse_args(argv)
    if args.backbone:
        run_backbone_demo(args.backbone, image=args.image, size=tuple(args.size), amp=args.amp)
        return
    res = run_segmentation_demo(args.config, args.work_dir, args.data_root, fp32=args.fp32)
    m = res['metrics']
    print(f"\nmIoU {float(m.get('mIoU', float('nan'))):.2f} on the demo validation split, "
          f"{res['elapsed_s'] / 60:.1f} min; overlays: {res['overlays']}; learning curve: {res['curve']}")


if __name__ == '__main__':
    sys.exit(run_main(main))
