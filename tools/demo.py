"""Backbone demo: build InternViT from a config, run it on an image, print feature shapes and the
attention kernel used.

    python tools/demo.py [CONFIG] [--image IMG] [--size H W] [--amp]
"""
import argparse
import sys
from pathlib import Path


sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from perception.demo import run_backbone_demo  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('config', nargs='?', default='mmcfg/_base_/models/internvit_tiny.py')
    p.add_argument('--image', help='an image file (default: a generated test pattern)')
    p.add_argument('--size', type=int, nargs=2, default=(224, 308), metavar=('H', 'W'))
    p.add_argument('--amp', action='store_true', help='bf16 autocast')
    args = p.parse_args(argv)
    run_backbone_demo(args.config, image=args.image, size=tuple(args.size), amp=args.amp)


if __name__ == '__main__':
    main()
