"""Convert any released InternViT checkpoint to perception's safetensors layout, or describe one.

    python tools/convert_checkpoint.py SRC DST [--dtype bf16] [--config 6b] [--force]
    python tools/convert_checkpoint.py --info SRC

SRC: a .pth/.bin/.safetensors file, a Hugging Face model directory or its *.index.json, a DeepSpeed
output directory. DST is written atomically (a failed run leaves no partial file). ``--info``
prints format, preset, parameter count and dtypes without building a model.
"""
import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from perception.common.cli import report, run_main  # noqa: E402  (torch-free)
from perception.checkpoint import CheckpointError  # noqa: E402
from perception.checkpoint.convert import checkpoint_info, convert_checkpoint, format_info  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('src')
    p.add_argument('dst', nargs='?')
    p.add_argument('--info', action='store_true', help='describe SRC and exit')
    p.add_argument('--json', action='store_true', help='with --info: print JSON')
    p.add_argument('--force', action='store_true', help='replace DST when it exists')
    p.add_argument('--dtype', choices=['bf16', 'fp16', 'fp32'], help='cast floating tensors (default: keep)')
    p.add_argument('--config', help='preset name, config.json or an inline JSON arch dict, for files that '
                   'carry no config (format A)')
    args = p.parse_args(argv)
    if args.config and args.config.lstrip().startswith('{'):
        args.config = json.loads(args.config)  # an inline arch dict
    try:
        if args.info:
            info = checkpoint_info(args.src, args.config)
            print(json.dumps(info, indent=1, default=str) if args.json else format_info(info))
            return 0
        if not args.dst:
            p.error('DST is required unless --info is given')
        info = convert_checkpoint(args.src, args.dst, config=args.config, dtype=args.dtype, overwrite=args.force)
        print(format_info(info))
    except (CheckpointError, ValueError) as e:
        return report(e)
    return 0


if __name__ == '__main__':
    sys.exit(run_main(main))
