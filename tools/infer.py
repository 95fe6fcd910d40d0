"""Segment an image or a folder: label PNGs and colour overlays.

    python tools/infer.py CONFIG CHECKPOINT IMAGE_OR_DIR --out DIR [--slide CROP STRIDE] [--device cpu]

Unreadable or corrupt images are reported by name and skipped; the others are written.
"""
import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from perception.apis import DictAction  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('config')
    p.add_argument('checkpoint')
    p.add_argument('inputs', nargs='+', help='image files or folders')
    p.add_argument('--out', required=True)
    p.add_argument('--slide', nargs=2, type=int, metavar=('CROP', 'STRIDE'),
                   help='sliding-window inference with this crop and stride (default: the config\'s test_cfg)')
    p.add_argument('--alpha', type=float, default=0.5)
    p.add_argument('--device', default='cpu')
    p.add_argument('--cfg-options', nargs='+', action=DictAction)
    args = p.parse_args(argv)
    from perception.inference import init_segmentor, segment_images
    model = init_segmentor(args.config, args.checkpoint, args.device, args.cfg_options, args.slide)
    res = segment_images(model, args.inputs, args.out, args.alpha)
    return 1 if res['failed'] and not res['written'] else 0


if __name__ == '__main__':
    sys.exit(main())
