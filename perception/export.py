"""Export trained segmentors for deployment: ONNX (verified in onnxruntime), fp16/bf16 safetensors, torch.export.

One call writes one bundle folder, atomically (built in a temporary folder next to it, verified, then
renamed into place; on any failure nothing is left behind and an existing bundle stays as it was)::

    out/
      manifest.json            normalisation, classes and palette, patch size, slide crop/stride, opset,
                               source config + checkpoint sha256, parity figures, every file's size/sha256
      model.onnx               dynamic batch and height/width (multiples of the patch size), logits resized
      model.onnx.data          to the input size; weights as external data above 2 GB (protobuf limit)
      config.py                the full config (backbone init_cfg dropped: the weights are all in the bundle)
      model.bf16.safetensors   (format 'safetensors') every segmentor tensor, floats in bf16 or fp16
      model.pt2                (format 'pt2') ``torch.export`` program, same dynamic shapes

The exported network is backbone -> neck -> decode head -> bilinear resize to the input, on a
normalised float32 ``[B, 3, H, W]`` input (mean/std and channel order in the manifest);
``perception.deploy`` reads the bundle without torch.
"""
import contextlib
import datetime
import io
import json
import os
import shutil
import tempfile
import time
import uuid
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from mmengine.logging import print_log
from torch import nn

from .checkpoint.loader import DTYPE_NAMES
from .deploy.bundle import (BUNDLE_FORMAT, BUNDLE_VERSION, MANIFEST_NAME, META_FORMAT, META_MODEL_ID,
                            META_NUM_CLASSES, META_PATCH_SIZE, ONNX_FORMAT_TAG, check_files, check_session,
                            read_manifest, sha256_file)
from .deploy.files import sha256_path
from . import ensure_registered

# ``import perception.deploy`` before this module skips the package's registration: do it here
ensure_registered()

FORMATS = ('onnx', 'safetensors', 'pt2')
# Weights above this go to ``model.onnx.data``: protobuf caps one message at 2 GiB (graph included);
# torch's exporter externalises from 1.5 GiB on whatever is asked, so that is the effective default.
EXTERNAL_DATA_THRESHOLD = 3 * 1024 ** 3 // 2
DEFAULT_TOLERANCE = 1e-3  # max |onnx - torch| over max(1, max |torch logit|)
DEFAULT_MIN_AGREEMENT = 0.999  # fraction of pixels whose argmax must agree
MAX_SIDE = 8192  # largest height/width the dynamic shapes allow
ONNX_FILE = 'model.onnx'
INPUT_NAME, OUTPUT_NAME = 'input', 'logits'
SAFETENSORS_DTYPES = ('bf16', 'fp16', 'fp32')


class ExportError(RuntimeError):
    """The segmentor cannot be exported as asked; the message says what and where."""


class ExportVerificationError(ExportError):
    """The exported model disagrees with PyTorch beyond the tolerance."""


# ----------------------------------------------------------------------------- the exported network
def adaptive_pool_matrix(n_in, n_out: int, like: torch.Tensor) -> torch.Tensor:
    """``[n_out, n_in]`` averaging weights of adaptive average pooling (bins ``floor(i n/o)..ceil((i+1) n/o)``).

    Built from tensor ops on a possibly symbolic ``n_in``, so the pooling exports with dynamic sizes
    (PyTorch's decomposition of ``adaptive_avg_pool2d`` bakes the traced size into gather indices).
    """
    i = torch.arange(n_out, device=like.device)
    j = torch.arange(n_in, device=like.device)
    start = (i * n_in) // n_out
    end = ((i + 1) * n_in + n_out - 1) // n_out
    mask = (j[None, :] >= start[:, None]) & (j[None, :] < end[:, None])
    return mask.to(like.dtype) / (end - start).to(like.dtype)[:, None]


class ExportableAdaptiveAvgPool2d(nn.Module):
    """``nn.AdaptiveAvgPool2d`` as two small matrix products: the same numbers, any input size."""

    def __init__(self, output_size):
        super().__init__()
        o = output_size if isinstance(output_size, (tuple, list)) else (output_size, output_size)
        if any(v is None for v in o):
            raise ExportError(f'AdaptiveAvgPool2d({output_size}) with a None size cannot be exported')
        self.output_size = (int(o[0]), int(o[1]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ph = adaptive_pool_matrix(x.shape[-2], self.output_size[0], x)
        pw = adaptive_pool_matrix(x.shape[-1], self.output_size[1], x)
        return torch.einsum('ih,bchw,jw->bcij', ph, x, pw)


@contextlib.contextmanager
def exportable_pools(module: nn.Module):
    """Temporarily replace every ``nn.AdaptiveAvgPool2d`` under ``module`` (UperNet's PPM)."""
    swapped = []
    for parent in list(module.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is nn.AdaptiveAvgPool2d:
                setattr(parent, name, ExportableAdaptiveAvgPool2d(child.output_size))
                swapped.append((parent, name, child))
    try:
        yield module
    finally:
        for parent, name, child in swapped:
            setattr(parent, name, child)


class ExportableSegmentor(nn.Module):
    """``forward(x)``: normalised ``[B, 3, H, W]`` -> logits ``[B, num_classes, H, W]``.

    The segmentor's backbone, neck and decode head (the auxiliary head is not part of inference), then
    a bilinear resize to the input size: what ``EncoderDecoder.encode_decode`` computes, through the
    backbone's own forward (InternViT traces with symbolic H, W: see ``pos_embed_for``).
    """

    def __init__(self, segmentor):
        super().__init__()
        self.backbone = segmentor.backbone
        self.neck = segmentor.neck if getattr(segmentor, 'with_neck', False) else None
        self.decode_head = segmentor.decode_head
        self.align_corners = bool(getattr(segmentor.decode_head, 'align_corners', False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = self.backbone(x)
        if self.neck is not None:
            feats = self.neck(feats)
        logits = self.decode_head(feats)
        return F.interpolate(logits, size=x.shape[2:], mode='bilinear', align_corners=self.align_corners)


def reference_logits(segmentor, x: torch.Tensor) -> torch.Tensor:
    """The PyTorch result the export must reproduce: mmseg's own ``encode_decode`` on ``x``."""
    with torch.no_grad():
        return segmentor.encode_decode(x, [dict(img_shape=x.shape[2:], ori_shape=x.shape[2:])])


# ----------------------------------------------------------------------------- bundle metadata
def _pair(v) -> Tuple[int, int]:
    if isinstance(v, (int, np.integer)):
        return int(v), int(v)
    return int(v[0]), int(v[1])


def _test_pipeline(cfg) -> list:
    try:
        return list(cfg.test_dataloader.dataset.pipeline)
    except (AttributeError, KeyError, TypeError):
        return list(cfg.get('test_pipeline') or [])


def resize_spec(cfg) -> Optional[Dict]:
    """The test-time resize of the config's pipeline, in the manifest's terms (None: none known)."""
    for t in _test_pipeline(cfg):
        typ = t.get('type') if isinstance(t, dict) else None
        if typ == 'ResizeShortSide':
            return dict(type='short_side', short_side=int(t['short_side']),
                        size_divisor=int(t.get('size_divisor', 1) or 1),
                        max_long_side=int(t['max_long_side']) if t.get('max_long_side') else None)
        if typ == 'Resize' and t.get('keep_ratio') and t.get('scale') is not None:
            return dict(type='keep_ratio', scale=[int(v) for v in _pair(t['scale'])])
        if typ in ('Resize', 'RandomResize', 'ResizeToMultiple', 'TestTimeAug'):
            print_log(f'test pipeline step {typ} has no deploy equivalent: the runtime uses the sliding '
                      'window on the image as given (upscaled when smaller than the crop)',
                      logger='current', level=30)
            return None
    return None


def bundle_metadata(segmentor, slide: Optional[Sequence] = None) -> Dict:
    """Everything the deploy runtime needs besides the model: normalisation, classes, palette, patch
    size, sliding window, test resize."""
    cfg = segmentor.cfg
    head = segmentor.decode_head
    n = int(head.num_classes)
    if int(getattr(head, 'out_channels', n)) != n:
        raise ExportError(f'decode head has out_channels={head.out_channels} for {n} classes (sigmoid '
                          'binary segmentation): not supported by the deploy runtime')
    p = getattr(segmentor.backbone, 'patch_size', None)
    if not isinstance(p, int):
        raise ExportError(f'backbone {type(segmentor.backbone).__name__} has no integer patch_size')
    meta = getattr(segmentor, 'dataset_meta', None) or {}
    classes = [str(c) for c in (meta.get('classes') or [])]
    if len(classes) != n:
        if classes:
            print_log(f'the dataset lists {len(classes)} classes but the head predicts {n}: the manifest '
                      'names them 0..N-1', logger='current', level=30)
        classes = [str(i) for i in range(n)]
        palette = None
    else:
        palette = meta.get('palette')
    if palette is None or len(palette) < n:
        from .deploy.runtime import default_palette
        palette = default_palette(n)
    palette = [[int(c) for c in rgb] for rgb in list(palette)[:n]]

    dp = cfg.model.get('data_preprocessor') or {}
    mean, std = dp.get('mean'), dp.get('std')
    if mean is None or std is None or len(mean) != 3 or len(std) != 3:
        raise ExportError(f'model.data_preprocessor needs 3-value mean and std to export, got mean={mean} '
                          f'std={std}')
    color = 'RGB' if dp.get('bgr_to_rgb', False) or dp.get('rgb_to_bgr', False) else 'BGR'

    tc = cfg.model.get('test_cfg') or {}
    if slide:
        crop, stride = _pair(slide[0]), _pair(slide[1])
    elif tc.get('mode') == 'slide':
        crop, stride = _pair(tc['crop_size']), _pair(tc['stride'])
    else:
        size = dp.get('size') or cfg.get('crop_size')
        if size is None:
            raise ExportError('the config has no slide test_cfg, data_preprocessor size or crop_size: pass '
                              'slide=(crop, stride)')
        crop = _pair(size)
        stride = tuple(max(p, int(round(c * 2 / 3 / p)) * p) for c in crop)
    if crop[0] % p or crop[1] % p:
        raise ExportError(f'slide crop {crop} is not a multiple of the patch size {p}')
    min_size = 2 * p if getattr(segmentor, 'with_neck', False) else p
    return dict(num_classes=n, classes=classes, palette=palette, patch_size=p, min_size=min_size,
                input=dict(name=INPUT_NAME, layout='NCHW', dtype='float32', color=color,
                           mean=[float(v) for v in mean], std=[float(v) for v in std]),
                slide=dict(crop=list(crop), stride=list(stride)), resize=resize_spec(cfg),
                align_corners=bool(getattr(head, 'align_corners', False)))


def default_verify_sizes(crop: Sequence[int], patch: int, min_size: int) -> List[Tuple[int, int, int]]:
    """Two sample shapes: the crop (batch 1) and a smaller non-square one (batch 2), e.g. 504x504 and
    2 x 252x378 (the check costs about 1.75 crops in each runtime)."""
    ch, cw = crop

    def side(v):
        return max(min_size, int(round(v / patch)) * patch)
    h2, w2 = side(ch / 2), side(cw * 3 / 4)
    if h2 == w2:
        w2 += patch
    return [(1, ch, cw), (2, h2, w2)]


# ----------------------------------------------------------------------------- export steps
def _dynamic_shapes(patch: int, min_size: int):
    from torch.export import Dim
    lo = max(1, -(-min_size // patch))
    batch = Dim('batch', min=1, max=1024)
    gh = Dim('grid_h', min=lo, max=MAX_SIDE // patch)
    gw = Dim('grid_w', min=lo, max=MAX_SIDE // patch)
    return {'x': {0: batch, 2: patch * gh, 3: patch * gw}}


def torch_export(wrapper: ExportableSegmentor, example: torch.Tensor, patch: int, min_size: int):
    """``torch.export`` of the wrapper with dynamic batch and H, W (multiples of ``patch``)."""
    with exportable_pools(wrapper), torch.no_grad():
        try:
            return torch.export.export(wrapper, (example,), dynamic_shapes=_dynamic_shapes(patch, min_size))
        except Exception as e:
            raise ExportError(f'torch.export failed for {type(wrapper.backbone).__name__} + '
                              f'{type(wrapper.decode_head).__name__}: {type(e).__name__}: '
                              f'{str(e).strip()[:2000]}') from e


def _initializer_bytes(model) -> int:
    total = 0
    for v in model.graph.initializers.values():
        if v.const_value is not None:
            total += v.const_value.nbytes
    return total


def export_onnx(exported_program, path, opset: Optional[int] = None, model_id: str = '', num_classes: int = 0,
                patch: int = 0, external_data_threshold: int = EXTERNAL_DATA_THRESHOLD) -> Dict:
    """ONNX through the dynamo exporter; the weights go to ``<file>.data`` above the threshold.

    Returns ``{'opset', 'external_data': [file names], 'initializer_bytes'}``.
    """
    path = Path(path)
    log = io.StringIO()
    try:
        with contextlib.redirect_stdout(log), torch.no_grad():
            prog = torch.onnx.export(exported_program, (), dynamo=True, opset_version=opset,
                                     input_names=[INPUT_NAME], output_names=[OUTPUT_NAME], verbose=False,
                                     optimize=True)
    except Exception as e:
        raise ExportError(f'ONNX export failed: {type(e).__name__}: {str(e).strip()[:2000]}') from e
    finally:
        if log.getvalue().strip():
            print_log(log.getvalue().strip(), logger='current', level=10)
    prog.model.metadata_props.update({META_FORMAT: ONNX_FORMAT_TAG, META_MODEL_ID: model_id,
                                      META_NUM_CLASSES: str(num_classes), META_PATCH_SIZE: str(patch)})
    nbytes = _initializer_bytes(prog.model)
    external = nbytes > external_data_threshold
    before = set(os.listdir(path.parent))
    prog.save(str(path), external_data=external)
    data_files = sorted(f for f in set(os.listdir(path.parent)) - before if f != path.name)
    if external and not data_files:
        raise ExportError(f'{path}: external data was requested but no data file was written')
    opset_used = int(prog.model.opset_imports.get('', 0))
    del prog
    return dict(opset=opset_used, external_data=data_files, initializer_bytes=int(nbytes))


def _compare(name: str, outs: Sequence[np.ndarray], refs: Sequence[torch.Tensor], tolerance: float,
             min_agreement: float) -> List[Dict]:
    rows, bad = [], []
    for o, r in zip(outs, refs):
        r = r.float().numpy()
        if o.shape != r.shape:
            bad.append(f'shape {tuple(o.shape)} != PyTorch {tuple(r.shape)}')
            rows.append(dict(shape=list(r.shape), max_abs_diff=None, argmax_agreement=None))
            continue
        diff = float(np.abs(o.astype(np.float32) - r).max())
        scale = max(1.0, float(np.abs(r).max()))
        agree = float((o.argmax(1) == r.argmax(1)).mean())
        rows.append(dict(shape=list(r.shape), max_abs_diff=diff, max_abs_logit=float(np.abs(r).max()),
                         argmax_agreement=agree))
        print_log(f'{name} vs PyTorch at {list(r.shape)}: max |logit diff| {diff:.3g} (logits up to '
                  f'{np.abs(r).max():.3g}), argmax agreement {100 * agree:.4f}%', logger='current')
        if not np.isfinite(diff) or diff > tolerance * scale:
            bad.append(f'{list(r.shape)}: max |logit diff| {diff:.3g} > tolerance {tolerance:g} x {scale:.3g}')
        if agree < min_agreement:
            bad.append(f'{list(r.shape)}: argmax agreement {100 * agree:.4f}% < {100 * min_agreement:.2f}%')
    if bad:
        raise ExportVerificationError(f'{name} does not reproduce PyTorch: ' + '; '.join(bad)
                                      + ' (no bundle written)')
    return rows


def verify_onnx(path, inputs: Sequence[torch.Tensor], refs: Sequence[torch.Tensor],
                tolerance: float = DEFAULT_TOLERANCE, min_agreement: float = DEFAULT_MIN_AGREEMENT):
    """Run the saved model in onnxruntime on ``inputs`` and compare with ``refs``.

    Returns ``(rows, session)``; raises ``ExportVerificationError`` past the tolerance.
    """
    from .deploy.bundle import open_session
    sess = open_session(Path(path))
    outs = [sess.run(None, {INPUT_NAME: x.numpy()})[0] for x in inputs]
    return _compare(f'onnxruntime ({Path(path).name})', outs, refs, tolerance, min_agreement), sess


def verify_pt2(path, inputs, refs, tolerance=DEFAULT_TOLERANCE, min_agreement=DEFAULT_MIN_AGREEMENT):
    module = torch.export.load(str(path)).module()
    with torch.no_grad():
        outs = [module(x).numpy() for x in inputs]
    return _compare(f'torch.export ({Path(path).name})', outs, refs, tolerance, min_agreement)


def export_safetensors(segmentor, out_dir, dtype: str = 'bf16', model_id: str = '') -> Dict:
    """Weights-only ``model.<dtype>.safetensors`` (every tensor of the segmentor, floats cast) and
    ``config.py``: ``init_segmentor(out/'config.py', out/'model.bf16.safetensors')`` loads them."""
    from .checkpoint.io import LazyTensor, read_safetensors, write_safetensors
    if dtype not in SAFETENSORS_DTYPES:
        raise ExportError(f'safetensors dtype must be one of {list(SAFETENSORS_DTYPES)}, got {dtype!r}')
    out_dir = Path(out_dir)
    path = out_dir / f'model.{dtype}.safetensors'
    state = segmentor.state_dict()
    tensors = {k: LazyTensor.wrap(v.detach().cpu()) for k, v in state.items()}
    write_safetensors(path, tensors, metadata=dict(format='perception-segmentor-weights', dtype=dtype,
                                                   config='config.py', model_id=model_id),
                      dtype=DTYPE_NAMES[dtype])
    back, _ = read_safetensors(path)
    wrong = [k for k in state if k not in back or tuple(back[k].shape) != tuple(state[k].shape)]
    if wrong or len(back) != len(state):
        raise ExportError(f'{path}: written tensors do not match the segmentor ({wrong[:5]})')
    return dict(file=path.name, dtype=dtype, tensors=len(state))


def dump_config(cfg, path):
    """The config as a self-contained ``.py`` (the backbone's pretrained ``init_cfg`` dropped)."""
    from mmengine.config import Config
    cfg = Config(cfg.to_dict() if hasattr(cfg, 'to_dict') else dict(cfg))
    bb = cfg.model.get('backbone') or {}
    if isinstance(bb, dict) and bb.get('init_cfg'):
        bb['init_cfg'] = None
    if cfg.model.get('init_cfg'):
        cfg.model['init_cfg'] = None
    cfg.model.pop('pretrained', None)
    cfg.dump(str(path))


# ----------------------------------------------------------------------------- the bundle
def _prepare_out(out_dir: Path):
    if out_dir.exists():
        if not out_dir.is_dir():
            raise ExportError(f'--out {out_dir} is a file, not a bundle folder')
        if any(out_dir.iterdir()) and not (out_dir / MANIFEST_NAME).is_file():
            raise ExportError(f'--out {out_dir} exists, is not empty and is not an export bundle (no '
                              f'{MANIFEST_NAME}): refusing to replace it')


def _finish_tree(d: Path):
    """fsync every file; give the folder and files the usual permissions (mkdtemp/mkstemp make them
    private)."""
    mask = os.umask(0)
    os.umask(mask)
    for f in d.iterdir():
        if f.is_file():
            with open(f, 'rb') as fh:
                os.fsync(fh.fileno())
            os.chmod(f, 0o666 & ~mask)
    os.chmod(d, 0o777 & ~mask)


def _move_into_place(tmp: Path, out_dir: Path):
    """Rename the finished bundle over ``out_dir``; an existing bundle is swapped out, then removed."""
    if out_dir.exists():
        old = out_dir.parent / f'.{out_dir.name}.old-{uuid.uuid4().hex[:8]}'
        os.rename(out_dir, old)
        try:
            os.rename(tmp, out_dir)
        except BaseException:
            os.rename(old, out_dir)
            raise
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.rename(tmp, out_dir)


def export_model(segmentor, out_dir, formats: Sequence[str] = ('onnx',), slide: Optional[Sequence] = None,
                 opset: Optional[int] = None, tolerance: float = DEFAULT_TOLERANCE,
                 min_agreement: float = DEFAULT_MIN_AGREEMENT,
                 verify_sizes: Optional[Sequence[Tuple[int, int, int]]] = None,
                 external_data_threshold: int = EXTERNAL_DATA_THRESHOLD, dtype: str = 'bf16',
                 source: Optional[Dict] = None, seed: int = 0) -> Dict:
    """Export a built segmentor (``perception.inference.init_segmentor``) into the bundle ``out_dir``.

    ``formats``: any of 'onnx', 'safetensors', 'pt2'. Each exported model is checked against PyTorch
    on ``verify_sizes`` (``(batch, H, W)``; default: the crop with batch 2 and a non-square size);
    past ``tolerance`` (max abs logit difference over ``max(1, max |logit|)``) or below
    ``min_agreement`` (argmax), ``ExportVerificationError`` is raised and nothing is written.
    Returns the manifest.
    """
    formats = list(dict.fromkeys(formats))
    unknown = [f for f in formats if f not in FORMATS]
    if unknown or not formats:
        raise ExportError(f'unknown export format(s) {unknown or formats}; choose from {FORMATS}')
    out_dir = Path(out_dir).absolute()
    _prepare_out(out_dir)
    if getattr(segmentor.backbone, 'output_cls_token', False):
        raise ExportError('backbone output_cls_token=True: segmentation heads read feature maps only')
    segmentor.eval()
    t0 = time.perf_counter()
    meta = bundle_metadata(segmentor, slide)
    p, min_size = meta['patch_size'], meta['min_size']
    model_id = uuid.uuid4().hex
    sizes = [tuple(int(v) for v in s) for s in (verify_sizes or default_verify_sizes(meta['slide']['crop'], p,
                                                                                     min_size))]
    for b, h, w in sizes:
        if h % p or w % p or min(h, w) < min_size:
            raise ExportError(f'verification size {h}x{w} must be multiples of the patch size {p}, at least '
                              f'{min_size}')
    g = torch.Generator().manual_seed(seed)
    inputs = [torch.randn(b, 3, h, w, generator=g) for b, h, w in sizes]
    need_model = any(f in formats for f in ('onnx', 'pt2'))
    refs = [reference_logits(segmentor, x) for x in inputs] if need_model else []

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f'.{out_dir.name}.', suffix='.tmp', dir=out_dir.parent))
    session = None
    try:
        manifest = dict(format=BUNDLE_FORMAT, version=BUNDLE_VERSION, model_id=model_id)
        manifest.update(meta)
        dump_config(segmentor.cfg, tmp / 'config.py')
        manifest['config'] = 'config.py'
        ep = None
        if need_model:
            wrapper = ExportableSegmentor(segmentor).eval()
            example = torch.randn(2, 3, *meta['slide']['crop'], generator=g)
            t = time.perf_counter()
            ep = torch_export(wrapper, example, p, min_size)
            print_log(f'torch.export: {time.perf_counter() - t:.1f} s', logger='current')
        if 'pt2' in formats:
            torch.export.save(ep, str(tmp / 'model.pt2'))
            rows = verify_pt2(tmp / 'model.pt2', inputs, refs, tolerance, min_agreement)
            manifest['pt2'] = dict(file='model.pt2', verification=rows)
        if 'safetensors' in formats:
            manifest['safetensors'] = export_safetensors(segmentor, tmp, dtype, model_id)
        if 'onnx' in formats:
            t = time.perf_counter()
            info = export_onnx(ep, tmp / ONNX_FILE, opset, model_id, meta['num_classes'], p,
                               external_data_threshold)
            print_log(f'ONNX export (opset {info["opset"]}, {info["initializer_bytes"] / 2 ** 20:.1f} MiB of '
                      f'weights{", external data" if info["external_data"] else ""}): '
                      f'{time.perf_counter() - t:.1f} s', logger='current')
            ep = None
            rows, session = verify_onnx(tmp / ONNX_FILE, inputs, refs, tolerance, min_agreement)
            manifest['onnx'] = dict(file=ONNX_FILE, external_data=info['external_data'], opset=info['opset'],
                                    input=INPUT_NAME, output=OUTPUT_NAME,
                                    initializer_bytes=info['initializer_bytes'])
            manifest['opset'] = info['opset']
            manifest['verification'] = dict(tolerance=tolerance, min_argmax_agreement=min_agreement,
                                            onnxruntime=rows)
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
                             for f in sorted(tmp.iterdir()) if f.is_file() and f.name != MANIFEST_NAME}
        manifest['export_seconds'] = round(time.perf_counter() - t0, 1)
        (tmp / MANIFEST_NAME).write_text(json.dumps(manifest, indent=1) + '\n')
        if session is not None:  # what perception.deploy.load_bundle will check, on the final files
            m = read_manifest(tmp)
            check_files(tmp, m)
            check_session(session, m, tmp / ONNX_FILE)
        session = None
        _finish_tree(tmp)
        _move_into_place(tmp, out_dir)
    except BaseException:
        session = None
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    manifest['path'] = str(out_dir)
    print_log(f'exported {", ".join(formats)} to {out_dir} in {manifest["export_seconds"]} s', logger='current')
    return manifest


def export_segmentor(config, checkpoint: Optional[str], out_dir, formats: Sequence[str] = ('onnx',),
                     cfg_options: Optional[Dict] = None, **kwargs) -> Dict:
    """Build the segmentor of ``config`` with ``checkpoint`` (any format this project reads; None: the
    config's own initialisation) and :func:`export_model` it. Returns the manifest."""
    from .inference import init_segmentor
    model = init_segmentor(config, checkpoint, 'cpu', cfg_options)
    cfg_path = getattr(model.cfg, 'filename', None) if not isinstance(config, (str, Path)) else str(config)
    source = dict(config=str(Path(cfg_path).absolute()) if cfg_path else None,
                  config_sha256=sha256_path(cfg_path) if cfg_path else None,
                  cfg_options=cfg_options or None,
                  checkpoint=str(Path(checkpoint).absolute()) if checkpoint else None,
                  checkpoint_sha256=sha256_path(checkpoint) if checkpoint else None)
    return export_model(model, out_dir, formats, source=source, **kwargs)


# ----------------------------------------------------------------------------- latency
