"""Merge an FSDP sharded checkpoint into one ordinary segmentor checkpoint.

    python tools/consolidate_checkpoint.py CHECKPOINT_OR_WORK_DIR OUT.pth [--config CONFIG]

CHECKPOINT_OR_WORK_DIR: a sharded checkpoint folder (``iter_N.pth/`` holding ``rank0.pth`` ...) or
the work dir of an FSDP run (its ``last_checkpoint`` is used). The output is written atomically and
loads strictly in tools/test.py, tools/infer.py and tools/export.py. A missing or damaged rank file is
an error naming it, and nothing is written. Parameter shapes come from the config stored in the
checkpoint; --config overrides it. BatchNorm running statistics are rank 0's.
"""
import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from perception.common.cli import run_main  # noqa: E402  (torch-free)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('checkpoint', help='sharded checkpoint folder (iter_N.pth/) or FSDP work dir')
    p.add_argument('out', help='output .pth (must not exist unless --force)')
    p.add_argument('--config', help='the training config, when the checkpoint stores none')
    p.add_argument('--force', action='store_true', help='replace OUT if it exists')
    args = p.parse_args(argv)
    from perception.consolidate import consolidate_checkpoint
    if Path(args.out).is_dir():
        raise IsADirectoryError(f'{args.out} is a directory: give the output file name')
    if Path(args.out).exists() and not args.force:
        raise FileExistsError(f'{args.out} exists; pass --force to replace it')
    consolidate_checkpoint(args.checkpoint, args.out, args.config)  # bad input: one line (run_main)


if __name__ == '__main__':
    sys.exit(run_main(main))
