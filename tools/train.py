"""Train a segmentor (or classifier) from an mmseg-style config.

    python tools/train.py CONFIG [--work-dir DIR] [--resume [CKPT]] [--amp | --fp32] [--auto-scale-lr]
                                 [--cfg-options k=v ...] [--launcher none|pytorch]

Distributed: tools/dist_train.sh CONFIG NUM_PROCS (torchrun; gloo on CPU, nccl on GPUs).

One run per work dir: the run holds ``WORK_DIR/.perception-train.lock`` while it trains (global rank 0
for all ranks), and a second run into that work dir is refused in one line naming the first (pid, host,
start time, command). A lock left by a run that was killed is replaced, with a warning naming it.
"""
import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from perception.common.cli import run_main  # noqa: E402  (torch-free)
from perception.apis import train  # noqa: E402
from perception.config import DictAction, add_compile_argument, compile_options  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('config')
    p.add_argument('--work-dir', help='where logs and checkpoints go (default ./work_dirs/<config name>)')
    p.add_argument('--resume', nargs='?', const='auto', default=None,
                   help='resume from CKPT, or from the latest checkpoint in the work dir when no path is given')
    g = p.add_mutually_exclusive_group()
    g.add_argument('--amp', action='store_true', help='bf16 mixed precision (autocast; CPU or GPU)')
    g.add_argument('--fp32', action='store_true', help='force fp32 even if the config asks for AMP')
    p.add_argument('--random-init', action='store_true',
                   help='without the config\'s pretrained weights (random initialisation: smoke runs, memory, speed)')
    p.add_argument('--auto-scale-lr', action='store_true',
                   help='scale the lr linearly from the config\'s auto_scale_lr.base_batch_size to this run\'s batch '
                        '(GPUs x batch_size x accumulative_counts)')
    p.add_argument('--cfg-options', nargs='+', action=DictAction, help='override config keys, xxx=yyy')
    add_compile_argument(p)
    p.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'], default='none')
    p.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = p.parse_args(argv)
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return args


def main(argv=None):
    args = parse_args(argv)
    # bad input (a config, a checkpoint, a work dir) raises an InputError: run_main reports it in one line
    train(args.config, work_dir=args.work_dir, resume=args.resume or False, amp=args.amp, fp32=args.fp32,
          cfg_options=compile_options(args.compile, args.cfg_options), launcher=args.launcher,
          auto_scale_lr=args.auto_scale_lr, random_init=args.random_init)
    if args.launcher != 'none':
        # All ranks passed a barrier and the process group is destroyed (perception.apis.train). Skip
        # the interpreter's teardown: gloo's background threads, destroyed during static destruction,
        # occasionally abort a finished rank ("terminate called without an active exception").
        import logging
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)


if __name__ == '__main__':
    sys.exit(run_main(main))
