"""Plot the learning curve (loss, validation mIoU) of a run as PNG.

    python tools/plot_curve.py WORK_DIR_OR_SCALARS_JSON [--out PNG [--force]]

Writes ``learning_curve.png`` beside the run's log folder (replacing the one an earlier call wrote);
an explicit ``--out`` that exists is replaced only with ``--force``.
"""
import argparse
import os.path as osp
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from perception.common.cli import run_main  # noqa: E402  (torch-free)
from perception.visualization import find_scalars, plot_learning_curve  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('src', help='a work dir, a run log dir, or a vis_data/scalars.json')
    p.add_argument('--out', help='default: learning_curve.png in the work dir')
    p.add_argument('--force', action='store_true', help='replace --out when it exists')
    args = p.parse_args(argv)
    scalars = args.src if args.src.endswith('.json') else find_scalars(args.src)
    if not scalars or not osp.isfile(scalars):
        raise FileNotFoundError(f'no vis_data/scalars.json found under {args.src}')
    if args.out and osp.exists(args.out) and not args.force:
        raise FileExistsError(f'{args.out} exists: pass --force to replace it, or choose another --out')
    if args.out and not args.out.lower().endswith('.png'):
        raise ValueError(f'--out {args.out}: expected a .png file name')
    out = args.out or osp.join(osp.dirname(osp.dirname(scalars)), 'learning_curve.png')
    print(plot_learning_curve(scalars, out))


if __name__ == '__main__':
    sys.exit(run_main(main))
