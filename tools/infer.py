"""Segment an image or a folder: label PNGs and colour overlays.

    python tools/infer.py CONFIG CHECKPOINT IMAGE_OR_DIR --out DIR [--slide CROP STRIDE] [--device cpu]
    python tools/infer.py CONFIG --random-init IMAGE_OR_DIR --out DIR   # no weights: a smoke run
    python tools/infer.py --backend onnx BUNDLE_DIR IMAGE_OR_DIR --out DIR [--slide CROP STRIDE] [--verify-hashes]

``--backend torch`` (default) builds the segmentor from its config and checkpoint. ``--backend onnx``
runs a bundle written by ``tools/export.py`` with ``perception.deploy`` (numpy + onnxruntime + OpenCV:
neither torch nor mmseg is imported). Unreadable or corrupt images are reported by name and skipped;
the others are written. ``--out`` keeps a record of what this tool wrote there (``.perception-outputs.json``):
only those files are replaced, a file of an output's name that it did not write is refused before the
model is loaded, and its outputs are never read as inputs (an ``--out`` inside the input folder is left
out; so is every file an earlier run recorded), so a rerun into the same folder gives the same files. Both backends label an image the same way: the config's test resize and mode
(``slide`` windows placed as mmseg places them, or ``whole``); a network input whose side is not a
multiple of the patch size is padded at the bottom/right and its logits cropped back
(perception/segmentation/padding.py).
"""
import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from perception.common.cli import run_main, positive_int, unit_float, torch_device  # noqa: E402  (torch-free)


def _parser(torch_backend: bool):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--backend', choices=['torch', 'onnx'], default='torch')
    p.add_argument('paths', nargs='+', metavar='CONFIG CHECKPOINT | BUNDLE_DIR',
                   help='torch: CONFIG CHECKPOINT then image files or folders; onnx: BUNDLE_DIR then images')
    p.add_argument('--out', required=True)
    p.add_argument('--slide', nargs=2, type=positive_int, metavar=('CROP', 'STRIDE'),
                   help="sliding-window inference with this crop and stride (default: the config's test_cfg, "
                        "or the bundle's manifest)")
    p.add_argument('--alpha', type=unit_float, default=0.5)
    p.add_argument('--device', type=torch_device, default='cpu', help='torch backend only')
    p.add_argument('--threads', type=positive_int, default=None, help='onnx backend: onnxruntime intra-op threads')
    p.add_argument('--verify-hashes', action='store_true',
                   help='onnx backend: check the sha256 of every bundle file before running (slow for large '
                        'models; sizes and the preprocessing hash are always checked)')
    if torch_backend:
        from perception.config import DictAction, add_compile_argument
        p.add_argument('--cfg-options', nargs='+', action=DictAction)
        add_compile_argument(p)
        p.add_argument('--random-init', action='store_true',
                       help='no checkpoint (then: CONFIG IMAGES...): random weights, without the config\'s '
                            'pretrained backbone (smoke runs)')
    return p


def main(argv=None):
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument('--backend', choices=['torch', 'onnx'], default='torch')
    backend = pre.parse_known_args(argv)[0].backend
    args = _parser(backend == "torch").parse_intermixed_args(argv)  # CONFIG --random-init IMAGES...
    if backend == 'onnx':
        return _main_onnx(args)
    if len(args.paths) < (2 if args.random_init else 3):
        _parser(True).error('the torch backend needs CONFIG CHECKPOINT (or CONFIG --random-init) and at least one '
                            'image or folder')
    config = args.paths[0]
    checkpoint, inputs = (None, args.paths[1:]) if args.random_init else (args.paths[1], args.paths[2:])
    from perception.deploy.io import plan_outputs
    plan_outputs(inputs, args.out)  # no images, outputs over files we did not write: refused before the model load
    from perception.config import compile_options
    from perception.inference import init_segmentor, segment_images
    # bad input (a test_cfg that cannot work, no images, two inputs with one output name): one line, run_main
    model = init_segmentor(config, checkpoint, args.device, compile_options(args.compile, args.cfg_options),
                           args.slide, random_init=args.random_init)
    res = segment_images(model, inputs, args.out, args.alpha)
    return 1 if res['failed'] and not res['written'] else 0


def _main_onnx(args):
    import logging
    logging.basicConfig(level=logging.INFO, format='%(levelname)s %(message)s')
    if len(args.paths) < 2:
        _parser(False).error('the onnx backend needs BUNDLE_DIR and at least one image or folder')
    from perception.deploy import load_bundle, segment_images
    from perception.deploy.io import plan_outputs
    slide = ((args.slide[0],) * 2, (args.slide[1],) * 2) if args.slide else None
    plan_outputs(args.paths[1:], args.out)  # no images, outputs over files we did not write: refused before loading
    seg = load_bundle(args.paths[0], threads=args.threads, slide=slide, verify_hashes=args.verify_hashes)
    res = segment_images(seg, args.paths[1:], args.out, args.alpha)  # bad input: one line (run_main)
    return 1 if res['failed'] and not res['written'] else 0


if __name__ == '__main__':
    sys.exit(run_main(main))
