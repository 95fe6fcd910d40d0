"""Export a trained segmentor for deployment, verified against PyTorch.

    python tools/export.py CONFIG CHECKPOINT --format onnx --out DIR
    python tools/export.py CONFIG CHECKPOINT --format onnx safetensors pt2 --dtype bf16 --out DIR
    python tools/export.py CONFIG CHECKPOINT --dtype fp16 --out DIR       # fp16 ONNX (GPU runtimes)

DIR becomes a bundle: model.onnx (+ model.onnx.data above --external-data-threshold, 1.5 GiB), manifest.json, config.py and the other
formats asked for. The ONNX model runs in onnxruntime on two sample sizes and is compared with PyTorch
before anything is written; past the tolerance the export fails and DIR is left as it was. Run the
bundle without torch: ``python tools/infer.py --backend onnx DIR images/ --out out/``.
CHECKPOINT may be ``none`` (the config's own initialisation, e.g. to test a deployment path).
"""
import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from perception.common.cli import report, run_main, non_negative_float, non_negative_int, positive_int, unit_float  # noqa: E402  (torch-free)
from perception.config import DictAction  # noqa: E402


def _size(s):
    try:
        h, w = (int(v) for v in s.lower().split('x'))
    except ValueError:
        raise argparse.ArgumentTypeError(f'expected HxW, got {s!r}')
    return h, w


def main(argv=None):
    from perception.export import (DEFAULT_MIN_AGREEMENT, DEFAULT_TOLERANCE, DEFAULT_TOLERANCE_FP16,
                                   EXTERNAL_DATA_THRESHOLD, FORMATS)
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('config')
    p.add_argument('checkpoint', nargs='?', help="segmentor checkpoint (any format this project reads); 'none' "
                                                 'is --random-init')
    p.add_argument('--random-init', action='store_true',
                   help='no weights: the model\'s own random initialisation, without the config\'s pretrained '
                        'backbone (smoke runs, export memory and speed)')
    p.add_argument('--format', nargs='+', default=['onnx'], choices=FORMATS, dest='formats')
    p.add_argument('--out', required=True, help='bundle folder (replaced atomically when it is a bundle)')
    p.add_argument('--dtype', default='bf16', choices=['bf16', 'fp16', 'fp32'],
                   help='safetensors weights; fp16 also exports the ONNX model in fp16 (half the file, for GPU '
                        'runtimes; bf16 and fp32 give an fp32 ONNX model: onnxruntime has no bf16 CPU kernels)')
    p.add_argument('--slide', nargs=2, type=positive_int, metavar=('CROP', 'STRIDE'),
                   help="sliding window recorded for the runtime (default: the config's test_cfg)")
    p.add_argument('--opset', type=positive_int, default=None, help='ONNX opset (default: the exporter\'s)')
    p.add_argument('--tolerance', type=non_negative_float, default=None,
                   help=f'max |onnx - torch| logit difference, relative to max(1, max |logit|) (default '
                        f'{DEFAULT_TOLERANCE:g}; {DEFAULT_TOLERANCE_FP16:g} for an fp16 ONNX model)')
    p.add_argument('--min-agreement', type=unit_float, default=DEFAULT_MIN_AGREEMENT,
                   help='minimum fraction of pixels whose argmax must agree')
    p.add_argument('--verify-size', nargs='+', type=_size, metavar='HxW',
                   help='sample sizes for the parity check, the first at batch 1, the others at batch 2 '
                        '(default: the crop and a smaller non-square size)')
    p.add_argument('--external-data-threshold', type=non_negative_int, default=EXTERNAL_DATA_THRESHOLD,
                   help='weights above this many bytes go to model.onnx.data (default 1.5 GiB, under '
                        'protobuf\'s 2 GiB limit)')
    p.add_argument('--low-memory', action='store_true',
                   help='the 6B on a 24 GiB machine: backbone held in bf16 (no fp32 copy), graph traced on the meta '
                        'device, fp32 ONNX weights streamed to external data and memory-mapped by onnxruntime, the '
                        'reference computed in fp32 one module at a time (docs/export.md)')
    p.add_argument('--whole-images', type=int, default=None, metavar='N',
                   help='check N of the 5 whole-image shapes (default all; each costs several full forwards in '
                        'both runtimes: minutes for the 6B on a CPU)')
    p.add_argument('--cfg-options', nargs='+', action=DictAction)
    args = p.parse_args(argv)
    if args.whole_images is not None and not 0 <= args.whole_images <= 5:
        p.error(f'--whole-images must be within 0..5, got {args.whole_images}')
    from perception.export import ExportVerificationError, export_segmentor
    random_init = args.random_init or (args.checkpoint or '').lower() == 'none'
    ckpt = None if random_init else args.checkpoint
    if args.random_init and args.checkpoint and args.checkpoint.lower() != 'none':
        p.error('give a CHECKPOINT or --random-init, not both')
    if not ckpt and not random_init:
        p.error('give a CHECKPOINT, or --random-init to export with random weights')
    sizes = None
    if args.verify_size:
        sizes = [(1 if i == 0 else 2, h, w) for i, (h, w) in enumerate(args.verify_size)]  # batch 2 too
    try:
        export_segmentor(args.config, ckpt, args.out, args.formats, cfg_options=args.cfg_options,
                         slide=((args.slide[0],) * 2, (args.slide[1],) * 2) if args.slide else None,
                         opset=args.opset, tolerance=args.tolerance, min_agreement=args.min_agreement,
                         verify_sizes=sizes, external_data_threshold=args.external_data_threshold,
                         dtype=args.dtype, low_memory=args.low_memory, whole_images=args.whole_images,
                         random_init=random_init)
    except ExportVerificationError as e:  # the bundle disagrees with PyTorch: status 1, not bad input
        return report(e, 'export failed', 1)
    return 0


if __name__ == '__main__':
    sys.exit(run_main(main))
