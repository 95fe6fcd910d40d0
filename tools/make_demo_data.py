"""Generate the demo segmentation dataset (ADE20K layout) from a seed, in seconds.

    python tools/make_demo_data.py [--out data/demo_shapes] [--seed 0] [--num-train 320] [--num-val 80]
    python tools/make_demo_data.py --cls [--out data/demo_shapes_cls] [--seed 0]
        # classification: ImageNet folder layout + a seeded tiny backbone checkpoint
"""
import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from perception.common.cli import run_main, non_negative_int, positive_int  # noqa: E402  (torch-free)
from perception.datasets.demo_cls_data import ensure_cls_demo_dataset  # noqa: E402
from perception.datasets.demo_data import ensure_demo_dataset  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--cls', action='store_true', help='the classification dataset instead')
    p.add_argument('--out', default=None, help='default data/demo_shapes (data/demo_shapes_cls with --cls)')
    p.add_argument('--seed', type=non_negative_int, default=0)
    p.add_argument('--num-train', type=positive_int, default=320)
    p.add_argument('--num-val', type=positive_int, default=80)
    p.add_argument('--size', type=positive_int, nargs=2, default=(112, 112), metavar=('H', 'W'))
    args = p.parse_args(argv)
    t0 = time.perf_counter()
    from perception.common.cli import report
    if args.cls:
        try:
            out = ensure_cls_demo_dataset(args.out or 'data/demo_shapes_cls', args.seed, size=tuple(args.size))
        except ValueError as e:
            return report(e)
        print(f'the classification demo dataset and its tiny backbone in {out} ({time.perf_counter() - t0:.1f} s)')
        return
    try:  # reused when made with these parameters, regenerated when made with others, else refused
        out = ensure_demo_dataset(args.out or 'data/demo_shapes', args.seed, args.num_train, args.num_val,
                                  tuple(args.size))
    except ValueError as e:
        return report(e)
    print(f'{args.num_train} training and {args.num_val} validation images in {out} '
          f'({time.perf_counter() - t0:.1f} s)')


if __name__ == '__main__':
    sys.exit(run_main(main))
