"""Plot the learning curve (loss, validation mIoU) of a run as PNG.

    python tools/plot_curve.py WORK_DIR_OR_SCALARS_JSON [--out learning_curve.png]
"""
import argparse
import os.path as osp
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from perception.visualization import find_scalars, plot_learning_curve  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('src', help='a work dir, a run log dir, or a vis_data/scalars.json')
    p.add_argument('--out')
    args = p.parse_args(argv)
    scalars = args.src if args.src.endswith('.json') else find_scalars(args.src)
    if not scalars or not osp.isfile(scalars):
        sys.exit(f'error: no vis_data/scalars.json found under {args.src}')
    out = args.out or osp.join(osp.dirname(osp.dirname(scalars)), 'learning_curve.png')
    print(plot_learning_curve(scalars, out))


if __name__ == '__main__':
    main()
