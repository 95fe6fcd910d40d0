"""``export_model`` / ``export_segmentor``: one call writes one verified bundle folder, atomically."""
import contextlib
import copy
import datetime
import json
import time
import uuid
from pathlib import Path
from typing import Dict, Optional, Sequence, Tuple

import torch
from mmengine.logging import print_log

from ..deploy.bundle import (BUNDLE_FORMAT, BUNDLE_VERSION, MANIFEST_NAME, check_digests, check_files,
                             check_session, manifest_digests, read_manifest, sha256_file)
from ..common.errors import UnavailableError
from ..common.files import sha256_path
from .bundle_io import (IN_PROGRESS, discard, finish_tree, make_tmp, move_into_place, prepare_out, recover_leftovers,
                        seal)
from .errors import ExportError
from .lowmem import fp32_compute, graph_model, low_precision_backbone
from .metadata import bundle_metadata, dump_config
from .verify import (DEFAULT_MIN_AGREEMENT, DEFAULT_TOLERANCE, DEFAULT_TOLERANCE_FP16, default_verify_sizes,
                     verify_onnx, verify_pt2, verify_whole_images, whole_image_shapes)
from .wrapper import ExportableSegmentor, HalfPrecisionNetwork, reference_logits
from .writers import (EXTERNAL_DATA_THRESHOLD, INPUT_NAME, ONNX_FILE, OUTPUT_NAME, SAFETENSORS_DTYPES,
                      export_onnx, export_safetensors, torch_export)


FORMATS = ('onnx', 'safetensors', 'pt2')


def check_onnx_packages(formats: Sequence[str]):
    """An ONNX export needs onnx, onnxscript (torch's exporter) and onnxruntime (the verification):
    refused in one line naming the missing ones, before any work."""
    import importlib.util
    if 'onnx' not in formats:
        return
    missing = [m for m in ('onnx', 'onnxscript', 'onnxruntime') if importlib.util.find_spec(m) is None]
    if missing:
        raise UnavailableError(f"--format onnx needs {', '.join(missing)}, not installed here: pip install "
                               "'perception[export]' (or export --format safetensors / pt2 only)")


def export_model(segmentor, out_dir, formats: Sequence[str] = ('onnx',), slide: Optional[Sequence] = None,
                 opset: Optional[int] = None, tolerance: Optional[float] = None,
                 min_agreement: float = DEFAULT_MIN_AGREEMENT,
                 verify_sizes: Optional[Sequence[Tuple[int, int, int]]] = None,
                 external_data_threshold: int = EXTERNAL_DATA_THRESHOLD, dtype: str = 'bf16',
                 source: Optional[Dict] = None, seed: int = 0, whole_images: Optional[int] = None) -> Dict:
    """Export a built segmentor (``perception.inference.init_segmentor``) into the bundle ``out_dir``.

    ``formats``: any of 'onnx', 'safetensors', 'pt2'. Each exported model is checked against PyTorch
    on ``verify_sizes`` (``(batch, H, W)``; default: the crop with batch 2 and a non-square size);
    past ``tolerance`` (max abs logit difference over ``max(1, max |logit|)``; default 1e-3, 2e-2 for an
    fp16 ONNX model) or below
    ``min_agreement`` (argmax), ``ExportVerificationError`` is raised and nothing is written.
    A segmentor whose backbone is held in bf16 (``init_segmentor(weights_dtype='bf16')``) is exported
    without any full fp32 copy (:mod:`.lowmem`): the fp32 ONNX weights are streamed to external data
    and the reference computes in fp32 one module at a time. ``whole_images``: how many of the
    whole-image shapes to check (default all five; each costs a few full forwards in both runtimes).
    Returns the manifest.
    """
    if dtype not in SAFETENSORS_DTYPES:
        raise ExportError(f'dtype {dtype!r} is not one of {SAFETENSORS_DTYPES}')
    # the ONNX model: fp16 when asked; bf16 has no onnxruntime CPU kernels, so it stays fp32 (said below)
    onnx_dtype = 'fp16' if dtype == 'fp16' else 'fp32'
    fp32_tolerance = DEFAULT_TOLERANCE if tolerance is None else tolerance  # pt2 and fp32 ONNX
    if tolerance is None:
        tolerance = DEFAULT_TOLERANCE_FP16 if onnx_dtype == 'fp16' else DEFAULT_TOLERANCE
    formats = list(dict.fromkeys(formats))
    unknown = [f for f in formats if f not in FORMATS]
    if unknown or not formats:
        raise ExportError(f'unknown export format(s) {unknown or formats}; choose from {FORMATS}')
    out_dir = Path(out_dir).absolute()
    prepare_out(out_dir)
    check_onnx_packages(formats)
    if getattr(segmentor.backbone, 'output_cls_token', False):
        raise ExportError('backbone output_cls_token=True: segmentation heads read feature maps only')
    segmentor.eval()
    low = low_precision_backbone(segmentor)
    if low is not None:
        if 'pt2' in formats:
            raise ExportError(f'format pt2 with a {str(low)[6:]} backbone: torch.export would save a {str(low)[6:]} '
                              'program; export pt2 from an fp32 segmentor, or leave pt2 out')
        if onnx_dtype == 'fp16':
            raise ExportError('--dtype fp16 with a low-memory (bf16) backbone: onnxruntime\'s CPU provider runs an '
                              'fp16 model with fp32 copies of its weights (measured +3.6 GiB of session memory for '
                              '1.9 GiB of fp16 weights), so the check would need ~2.5x the fp16 size; the low-memory '
                              'export writes fp32 weights that onnxruntime memory-maps instead')
        print_log(f'low-memory export: backbone held in {str(low)[6:]}, graph traced on the meta device, fp32 '
                  'ONNX weights streamed to external data, reference computed in fp32 one module at a time',
                  logger='current')
    compute = (lambda: fp32_compute(segmentor)) if low is not None else contextlib.nullcontext
    t0 = time.perf_counter()
    meta = bundle_metadata(segmentor, slide)
    sample = meta.pop('sample_size')
    meta['digests'] = manifest_digests(meta)  # classes, palette, preprocessing: checked at every load
    p, min_size = meta['size_divisor'], meta['min_size']  # sides: multiples of p (patch; adapter: 32)
    model_id = uuid.uuid4().hex
    sizes = [tuple(int(v) for v in s) for s in (verify_sizes or default_verify_sizes(sample, p, min_size))]
    for b, h, w in sizes:
        if h % p or w % p or min(h, w) < min_size:
            what = 'patch size' if p == meta['patch_size'] else 'size divisor'
            raise ExportError(f'verification size {h}x{w} must be multiples of the {what} {p}, at least {min_size}')
    g = torch.Generator().manual_seed(seed)
    inputs = [torch.randn(b, 3, h, w, generator=g) for b, h, w in sizes]
    need_model = any(f in formats for f in ('onnx', 'pt2'))
    with compute():
        refs = [reference_logits(segmentor, x) for x in inputs] if need_model else []

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    recover_leftovers(out_dir, lambda m: print_log(m, logger='current', level=30))
    tmp = make_tmp(out_dir)
    session = None
    try:
        manifest = dict(format=BUNDLE_FORMAT, version=BUNDLE_VERSION, model_id=model_id)
        manifest.update(meta)
        dump_config(segmentor.cfg, tmp / 'config.py')
        manifest['config'] = 'config.py'
        ep = None
        example = torch.randn(2, 3, *sample, generator=g)
        if 'pt2' in formats or ('onnx' in formats and onnx_dtype == 'fp32'):
            t = time.perf_counter()
            if low is not None:  # traced on a meta copy: no second model in memory
                ep = torch_export(ExportableSegmentor(graph_model(segmentor)).eval(), example.to('meta'), p, min_size)
            else:
                ep = torch_export(ExportableSegmentor(segmentor).eval(), example, p, min_size)
            print_log(f'torch.export: {time.perf_counter() - t:.1f} s', logger='current')
        if 'pt2' in formats:
            torch.export.save(ep, str(tmp / 'model.pt2'))
            rows = verify_pt2(tmp / 'model.pt2', inputs, refs, fp32_tolerance, min_agreement)
            manifest['pt2'] = dict(file='model.pt2', verification=rows)
        if 'safetensors' in formats:
            manifest['safetensors'] = export_safetensors(segmentor, tmp, dtype, model_id)
        if 'onnx' in formats:
            if onnx_dtype == 'fp16':  # a float16 copy of the network; the fp32 model stays the reference
                t = time.perf_counter()
                ep = torch_export(HalfPrecisionNetwork(copy.deepcopy(ExportableSegmentor(segmentor))).eval(),
                                  example, p, min_size)
                print_log(f'torch.export (fp16): {time.perf_counter() - t:.1f} s', logger='current')
            elif dtype == 'bf16':
                print_log('ONNX model in fp32 (onnxruntime has no bf16 CPU kernels; --dtype fp16 gives an '
                          'fp16 model); safetensors in bf16', logger='current')
            t = time.perf_counter()
            info = export_onnx(ep, tmp / ONNX_FILE, opset, model_id, meta['num_classes'], meta['patch_size'], p,
                               0 if low is not None else external_data_threshold,
                               weights=segmentor.state_dict() if low is not None else None)
            print_log(f'ONNX export (opset {info["opset"]}, {info["initializer_bytes"] / 2 ** 20:.1f} MiB of '
                      f'weights{", external data" if info["external_data"] else ""}): '
                      f'{time.perf_counter() - t:.1f} s', logger='current')
            ep = None
            t = time.perf_counter()
            rows, session = verify_onnx(tmp / ONNX_FILE, inputs, refs, tolerance, min_agreement,
                                        low_memory=low is not None)
            print_log(f'onnxruntime verification ({len(inputs)} inputs): {time.perf_counter() - t:.1f} s',
                      logger='current')
            manifest['onnx'] = dict(file=ONNX_FILE, dtype=onnx_dtype, external_data=info['external_data'],
                                    opset=info['opset'], low_memory=low is not None,
                                    input=INPUT_NAME, output=OUTPUT_NAME,
                                    initializer_bytes=info['initializer_bytes'])
            manifest['opset'] = info['opset']
            t = time.perf_counter()
            shapes = whole_image_shapes(sample, p)
            if whole_images is not None:
                if whole_images < 0:
                    raise ExportError(f'whole_images must be >= 0, got {whole_images}')
                if whole_images < len(shapes):
                    print_log(f'whole-image verification on {whole_images} of {len(shapes)} shapes (asked)',
                              logger='current', level=30)
                shapes = shapes[:whole_images]
            with compute():
                whole = verify_whole_images(segmentor, tmp, manifest, session, shapes, tolerance, min_agreement,
                                            seed)
            print_log(f'whole-image verification ({len(whole)} images): {time.perf_counter() - t:.1f} s',
                      logger='current')
            manifest['verification'] = dict(tolerance=tolerance, min_argmax_agreement=min_agreement,
                                            onnxruntime=rows, whole_images=whole)
        else:
            manifest['onnx'] = None
        src = dict(source or {})
        src.setdefault('torch', torch.__version__)
        try:
            import mmseg
            src.setdefault('mmseg', mmseg.__version__)
        except ImportError:
            pass
        src['exported_at'] = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds')
        manifest['source'] = src
        manifest['files'] = {f.name: dict(bytes=f.stat().st_size, sha256=sha256_file(f))
                             for f in sorted(tmp.iterdir())
                             if f.is_file() and f.name not in (MANIFEST_NAME, IN_PROGRESS)}
        manifest['export_seconds'] = round(time.perf_counter() - t0, 1)
        (tmp / MANIFEST_NAME).write_text(json.dumps(manifest, indent=1) + '\n')
        if session is not None:  # what perception.deploy.load_bundle will check, on the final files
            m = read_manifest(tmp)
            check_files(tmp, m)
            check_session(session, m, tmp / ONNX_FILE)
            check_digests(tmp, m)
        session = None
        seal(tmp)
        finish_tree(tmp)
        move_into_place(tmp, out_dir)
    except BaseException:
        session = None
        discard(tmp)
        raise
    manifest['path'] = str(out_dir)
    print_log(f'exported {", ".join(formats)} to {out_dir} in {manifest["export_seconds"]} s', logger='current')
    return manifest


def export_segmentor(config, checkpoint: Optional[str], out_dir, formats: Sequence[str] = ('onnx',),
                     cfg_options: Optional[Dict] = None, low_memory: bool = False, random_init: bool = False,
                     **kwargs) -> Dict:
    """Build the segmentor of ``config`` with ``checkpoint`` (any format this project reads; None: the
    config's own initialisation; ``random_init``: no pretrained weights at all) and :func:`export_model`
    it. ``low_memory``: the backbone is built and held in bf16 (no fp32 copy; see :mod:`.lowmem`).
    Returns the manifest."""
    prepare_out(Path(out_dir).absolute())  # refused before the model is built
    check_onnx_packages(formats)
    from ..inference import init_segmentor
    model = init_segmentor(config, checkpoint, 'cpu', cfg_options, weights_dtype='bf16' if low_memory else None,
                           random_init=random_init)
    cfg_path = getattr(model.cfg, 'filename', None) if not isinstance(config, (str, Path)) else str(config)
    source = dict(config=str(Path(cfg_path).absolute()) if cfg_path else None,
                  config_sha256=sha256_path(cfg_path) if cfg_path else None,
                  cfg_options=cfg_options or None,
                  checkpoint=str(Path(checkpoint).absolute()) if checkpoint else None,
                  checkpoint_sha256=sha256_path(checkpoint) if checkpoint else None,
                  random_init=bool(random_init))
    return export_model(model, out_dir, formats, source=source, **kwargs)
