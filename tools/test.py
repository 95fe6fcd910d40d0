"""Evaluate a segmentor checkpoint: this project's, or one of InternVL's ADE20K releases (format C).

    python tools/test.py CONFIG CHECKPOINT [--work-dir DIR] [--show-dir DIR] [--out DIR]
                                           [--cfg-options k=v ...] [--launcher none|pytorch]
    python tools/test.py CONFIG --random-init ...   # no weights at all: a smoke run of any shipped config

Loading is strict. A frozen InternVL release holds only heads and pyramid: the ViT comes from the
config's ``model.backbone.init_cfg`` checkpoint (format A); every key of both files is accounted for.

``--out DIR`` (segmentation): one ``<image name>.png`` per test image. Checked with the dataset's file
list before the model is loaded: a name that exists in DIR but that this project did not write there
(not in ``DIR/.perception-outputs.json``, or changed since: a ground-truth folder, a user's file) is
refused in one line, every file untouched; its own earlier outputs are replaced. One run writes into
DIR at a time. ``--work-dir`` takes no lock: a test writes only its own timestamped log folder, so it
may run beside a training run in the same work dir (to evaluate its checkpoints).
"""
import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from perception.common.cli import run_main  # noqa: E402  (torch-free)
from perception.apis import evaluate  # noqa: E402
from perception.config import DictAction, add_compile_argument, compile_options  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('config')
    p.add_argument('checkpoint', nargs='?')
    p.add_argument('--random-init', action='store_true',
                   help='no checkpoint: random weights, without the config\'s pretrained backbone (smoke runs)')
    p.add_argument('--tta', action='store_true',
                   help='multi-scale (0.5-1.75, sizes rounded to 14 or the test resize\'s size_divisor) + flip '
                        'test-time augmentation (mmseg SegTTAModel)')
    p.add_argument('--work-dir')
    p.add_argument('--show-dir', help='write prediction overlays here')
    p.add_argument('--out', help='write label maps here (<image name>.png; files this project did not write there '
                                  'are refused, not replaced)')
    p.add_argument('--cfg-options', nargs='+', action=DictAction)
    add_compile_argument(p)
    p.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'], default='none')
    p.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = p.parse_args(argv)
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    # bad input (a config, a checkpoint) raises an InputError: run_main reports it in one line
    metrics = evaluate(args.config, args.checkpoint, work_dir=args.work_dir,
                   cfg_options=compile_options(args.compile, args.cfg_options),
                   launcher=args.launcher, show_dir=args.show_dir, out=args.out, random_init=args.random_init,
                   tta=args.tta)
    print({k: round(float(v), 2) for k, v in (metrics or {}).items()})


if __name__ == '__main__':
    sys.exit(run_main(main))
