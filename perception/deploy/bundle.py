"""The export bundle: a folder with ``model.onnx`` (+ external data), ``manifest.json`` and, optionally,
weights for PyTorch users. Reading and validating it needs numpy + onnxruntime only.

The manifest schema (version 4; version 3 bundles, which predate ``size_divisor``, are read as they
were written: their inputs padded to ``patch_size``; version 2 bundles, whose hash covers the
preprocessing only, and version 1 bundles, which predate ``mode`` and any hash, are read with a
warning; version 1 as ``slide``)::

    format, version, model_id            'perception-segmentation-bundle', 4, a hex id also stored in
                                         the ONNX model's metadata (``perception.model_id``)
    onnx: {file, external_data: [..], opset, input, output}
    files: {name: {bytes, sha256}}       every file of the bundle but the manifest
    input: {name, layout 'NCHW', dtype 'float32', color 'RGB'|'BGR', mean, std}
    num_classes, classes, palette (RGB), patch_size, min_size
    size_divisor                         network input sides are padded to a multiple of this (the
                                         patch size of a plain ViT, 32 for InternViTAdapter); a
                                         multiple of patch_size, also in the ONNX metadata; absent
                                         (older bundles): patch_size. In a version 4 manifest its
                                         digest covers presence too: a deleted value is refused
    mode: 'slide' | 'whole'; slide: {crop: [h, w], stride: [h, w]} (null in whole mode)
    resize: null | {type: 'short_side', short_side, size_divisor, max_long_side}
            | {type: 'keep_ratio', scale: [long, short]} | {type: 'fixed', size: [h, w]}
    align_corners
    digests: {key: sha256}               one sha256 per key above that gives the labels their meaning
                                         or decides how an image becomes network inputs (MEANING_KEYS),
                                         checked at every load: an edited key is refused by name
                                         (version 2: preprocessing_sha256, one sha256 of PREPROCESSING_KEYS)
    source: {config, config_sha256, checkpoint, checkpoint_sha256, torch, mmseg, exported_at}
    verification: [{shape, max_abs_diff, argmax_agreement}], tolerance
"""
import hashlib
import json
import logging
from pathlib import Path
from typing import Dict, Optional

from ..common.errors import InputError, UnavailableError
from ..common.files import sha256_file
from ..common.geometry import check_slide, is_int_pair

MANIFEST_NAME = 'manifest.json'
BUNDLE_FORMAT = 'perception-segmentation-bundle'
BUNDLE_VERSION = 4
READABLE_VERSIONS = (1, 2, 3, 4)
ONNX_FORMAT_TAG = 'perception-segmentor'
# keys of the ONNX model's metadata_props written by the exporter
META_FORMAT = 'perception.format'
META_MODEL_ID = 'perception.model_id'
META_NUM_CLASSES = 'perception.num_classes'
META_PATCH_SIZE = 'perception.patch_size'
META_SIZE_DIVISOR = 'perception.size_divisor'

REQUIRED_KEYS = ('format', 'version', 'model_id', 'onnx', 'files', 'input', 'num_classes', 'classes',
                 'patch_size', 'slide', 'mode')
# what gives the labels their meaning and decides how an image becomes network inputs: one sha256 each in
# a version 3 manifest's 'digests'; version 4 adds size_divisor
MEANING_KEYS_V3 = ('num_classes', 'classes', 'palette', 'input', 'patch_size', 'min_size', 'mode', 'slide', 'resize',
                   'align_corners')
MEANING_KEYS = MEANING_KEYS_V3 + ('size_divisor',)
# version 2: the keys covered by its one preprocessing_sha256 (classes and palette were not)
PREPROCESSING_KEYS = ('input', 'num_classes', 'patch_size', 'min_size', 'mode', 'slide', 'resize',
                      'align_corners')

logger = logging.getLogger(__name__)


def _sha256_json(value) -> str:
    blob = json.dumps(value, sort_keys=True, separators=(',', ':'))
    return hashlib.sha256(blob.encode()).hexdigest()


def meaning_keys(version: int = BUNDLE_VERSION):
    """The keys a manifest of ``version`` (3 or later) covers in its ``digests``."""
    return MEANING_KEYS_V3 if version == 3 else MEANING_KEYS


def manifest_digests(manifest: Dict, version: int = BUNDLE_VERSION) -> Dict[str, str]:
    """``{key: sha256 of its canonical JSON}`` for the meaning keys of ``version``: the manifest's ``digests``."""
    return {k: _sha256_json(manifest.get(k)) for k in meaning_keys(version)}


def preprocessing_digest(manifest: Dict) -> str:
    """sha256 of the manifest's preprocessing values (canonical JSON of ``PREPROCESSING_KEYS``): the
    ``preprocessing_sha256`` of a version 2 manifest."""
    return _sha256_json({k: manifest.get(k) for k in PREPROCESSING_KEYS})


class DeployError(InputError, RuntimeError):
    """A bundle that cannot be used: the message names the file and the problem."""




def read_manifest(bundle_dir) -> Dict:
    """The manifest of ``bundle_dir``, checked for the keys and types the runtime relies on."""
    bundle_dir = Path(bundle_dir)
    if not bundle_dir.exists():
        raise DeployError(f'bundle not found: {bundle_dir}')
    if not bundle_dir.is_dir():
        raise DeployError(f'{bundle_dir} is not a bundle folder (expected a folder with {MANIFEST_NAME} '
                          'and model.onnx, as written by tools/export.py)')
    path = bundle_dir / MANIFEST_NAME
    if not path.is_file():
        raise DeployError(f'{path} not found: {bundle_dir} is not an export bundle')
    try:
        m = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise DeployError(f'{path}: unreadable manifest ({e})') from e
    if not isinstance(m, dict):
        raise DeployError(f'{path}: the manifest must be a JSON object, got {type(m).__name__}')
    if m.get('format') != BUNDLE_FORMAT:
        raise DeployError(f'{path}: not a perception bundle manifest (format {m.get("format")!r}, '
                          f'expected {BUNDLE_FORMAT!r})')
    if m.get('version') not in READABLE_VERSIONS:
        raise DeployError(f'{path}: manifest version {m.get("version")!r} is not supported (this runtime '
                          f'reads versions {list(READABLE_VERSIONS)})')
    if m['version'] == 1:
        logger.warning('%s: a version 1 bundle: its classes, palette and preprocessing are not covered by a '
                       'hash and it runs as "slide"; export it again for the checks of version %d', path,
                       BUNDLE_VERSION)
        m.setdefault('mode', 'slide')
    elif m['version'] == 2:
        logger.warning('%s: a version 2 bundle: its classes and palette are not covered by a hash (only its '
                       'preprocessing is); export it again for the checks of version %d', path, BUNDLE_VERSION)
    need = REQUIRED_KEYS + {2: ('preprocessing_sha256',), 3: ('digests',), 4: ('digests',)}.get(m['version'], ())
    missing = [k for k in need if k not in m]
    if missing:
        raise DeployError(f'{path}: manifest misses key(s) {missing}')
    if m['version'] >= 3:
        d = m['digests'] if isinstance(m['digests'], dict) else {}
        gone = [k for k in meaning_keys(m['version']) if not isinstance(d.get(k), str)]
        if gone:
            raise DeployError(f'{path}: manifest key \'digests\' misses the sha256 of {gone}')
    _check_manifest_values(m, path)
    return m


def check_digests(bundle_dir, manifest: Dict):
    """The manifest's meaning values (``MEANING_KEYS``: classes, palette, preprocessing, mode) match the
    ``digests`` written at export; an edited key is refused by name (version 2: the preprocessing values
    against ``preprocessing_sha256``; version 1: nothing to check). Cheap; ``load_bundle`` checks it
    after the checks against the model, whose errors are more specific."""
    path = Path(bundle_dir) / MANIFEST_NAME
    version = manifest.get('version', 1)
    if version >= 3:
        digests = manifest.get('digests') or {}
        got = manifest_digests(manifest, version)
        edited = [k for k in got if digests.get(k) != got[k]]
        if edited:
            what = (f'manifest key {edited[0]!r} does not match its' if len(edited) == 1 else
                    f'manifest keys {", ".join(repr(k) for k in edited)} do not match their')
            raise DeployError(f'{path}: {what} sha256 in \'digests\': the manifest was edited or damaged after '
                              'export (what the labels mean and how images are prepared are fixed at export: '
                              'export the model again to change them)')
    elif version == 2 and manifest.get('preprocessing_sha256') != preprocessing_digest(manifest):
        raise DeployError(f'{path}: the preprocessing values ({", ".join(PREPROCESSING_KEYS)}) do not match '
                          'their preprocessing_sha256: the manifest was edited or damaged after export')


def _check_manifest_values(m: Dict, path: Path):
    def bad(key, what):
        raise DeployError(f'{path}: manifest key {key!r} {what}')

    n = m['num_classes']
    if not isinstance(n, int) or n < 1:
        bad('num_classes', f'must be a positive integer, got {n!r}')
    if not isinstance(m['classes'], list) or len(m['classes']) != n:
        bad('classes', f'lists {len(m["classes"]) if isinstance(m["classes"], list) else "?"} names but '
                       f'num_classes is {n}')
    pal = m.get('palette')
    if pal is not None and (not isinstance(pal, list) or len(pal) != n
                            or any(not isinstance(c, list) or len(c) != 3 for c in pal)):
        bad('palette', f'must be {n} [r, g, b] triples')
    p = m['patch_size']
    if not isinstance(p, int) or p < 1:
        bad('patch_size', f'must be a positive integer, got {p!r}')
    d = m.get('size_divisor')  # absent (bundles before version 4): inputs are padded to the patch size
    if d is None:
        d = p
    elif not isinstance(d, int) or d < 1 or d % p:
        bad('size_divisor', f'must be a positive multiple of patch_size {p}, got {d!r}')
    if m['mode'] not in ('slide', 'whole'):
        bad('mode', f'must be "slide" or "whole", got {m["mode"]!r}')
    s = m['slide']
    if m['mode'] == 'slide' or s is not None:
        if not isinstance(s, dict) or not is_int_pair(s.get('crop')) or not is_int_pair(s.get('stride')):
            bad('slide', f'must be {{"crop": [h, w], "stride": [h, w]}} with positive integers, got {s!r}')
        try:
            check_slide(s['crop'], s['stride'], d, where=None)
        except ValueError as e:
            bad('slide', str(e))
    inp = m['input']
    if not isinstance(inp, dict) or not isinstance(inp.get('name'), str):
        bad('input', 'must name the ONNX input ({"name": ..., "mean": [3], "std": [3], "color": ...})')
    for k in ('mean', 'std'):
        v = inp.get(k)
        if not isinstance(v, list) or len(v) != 3 or any(not isinstance(x, (int, float)) for x in v):
            bad('input', f'{k} must be 3 numbers, got {v!r}')
    if any(x == 0 for x in inp['std']):
        bad('input', 'std has a zero')
    if inp.get('color', 'RGB') not in ('RGB', 'BGR'):
        bad('input', f'color must be "RGB" or "BGR", got {inp.get("color")!r}')
    onnx = m['onnx']
    if onnx is None:
        raise DeployError(f'{path}: this bundle has no ONNX model (exported without --format onnx); '
                          'load its safetensors weights with perception.inference.init_segmentor instead')
    if not isinstance(onnx, dict) or not isinstance(onnx.get('file'), str):
        bad('onnx', 'must name the model file ({"file": "model.onnx", ...})')
    if not isinstance(m['files'], dict):
        bad('files', 'must map file names to {"bytes": ..., "sha256": ...}')
    r = m.get('resize')
    if r is not None:
        if not isinstance(r, dict) or r.get('type') not in ('short_side', 'keep_ratio', 'fixed'):
            bad('resize', f'must be null or {{"type": "short_side" | "keep_ratio" | "fixed", ...}}, got {r!r}')
        if r['type'] == 'fixed' and not is_int_pair(r.get('size')):
            bad('resize', f'size must be [h, w] positive integers, got {r.get("size")!r}')
        if r['type'] == 'short_side' and not (isinstance(r.get('short_side'), int) and r['short_side'] > 0):
            bad('resize', f'short_side must be a positive integer, got {r.get("short_side")!r}')
        if r['type'] == 'keep_ratio' and not is_int_pair(r.get('scale')):
            bad('resize', f'scale must be [long, short] positive integers, got {r.get("scale")!r}')


def check_files(bundle_dir, manifest: Dict, verify_hashes: bool = False):
    """Every file the manifest lists exists with its recorded size (and sha256 with ``verify_hashes``)."""
    bundle_dir = Path(bundle_dir)
    for name, info in manifest['files'].items():
        if Path(name).is_absolute() or '..' in Path(name).parts:
            raise DeployError(f'{bundle_dir / MANIFEST_NAME}: file entry {name!r} must be relative to the bundle')
        f = bundle_dir / name
        if not f.is_file():
            raise DeployError(f'{f} is missing (listed in {MANIFEST_NAME})')
        size = f.stat().st_size
        want = info.get('bytes') if isinstance(info, dict) else None
        if want is not None and size != want:
            what = 'truncated' if size < want else 'larger than exported'
            raise DeployError(f'{f} is {what}: {size} bytes, {MANIFEST_NAME} says {want}')
        if verify_hashes and isinstance(info, dict) and info.get('sha256'):
            got = sha256_file(f)
            if got != info['sha256']:
                raise DeployError(f'{f} is corrupt or modified: sha256 {got} != {info["sha256"]} in {MANIFEST_NAME}')


def open_session(path: Path, providers=None, threads: Optional[int] = None, low_memory: bool = False):
    """An onnxruntime session on ``path``; unreadable or non-ONNX files give a DeployError naming it.

    ``low_memory`` (bundles exported with ``--low-memory``, manifest ``onnx.low_memory``): the weights
    stay memory-mapped from the external data file (page cache, not process memory): the matmul
    kernels make no prepacked copies of them (the exporter already folded the weight transposes).
    """
    try:
        import onnxruntime as ort
    except ImportError as e:
        raise UnavailableError(f'running {path} needs onnxruntime, which is not installed: '
                               "pip install 'perception[deploy]' (or onnxruntime==1.32.0)") from e
    if not Path(path).is_file():
        raise DeployError(f'{path} not found')
    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = int(threads)
    opts.log_severity_level = 3
    if low_memory:
        opts.add_session_config_entry('session.disable_prepacking', '1')
    try:
        return ort.InferenceSession(str(path), sess_options=opts,
                                    providers=list(providers or ['CPUExecutionProvider']))
    except Exception as e:  # onnxruntime raises its own Fail / InvalidProtobuf / InvalidGraph types
        msg = str(e).strip().splitlines()[0][:300] if str(e).strip() else type(e).__name__
        raise DeployError(f'{path} is not a loadable ONNX model (broken, truncated or not ONNX): {msg}') from e


def check_session(session, manifest: Dict, path: Path):
    """The ONNX model is this exporter's and agrees with the manifest (ids, input, classes, patch size, size
    divisor)."""
    meta = dict(session.get_modelmeta().custom_metadata_map or {})
    ins, outs = session.get_inputs(), session.get_outputs()
    desc = (f'inputs {[(i.name, i.shape) for i in ins]}, outputs {[(o.name, o.shape) for o in outs]}')
    if meta.get(META_FORMAT) != ONNX_FORMAT_TAG:
        raise DeployError(f'{path} is a foreign ONNX model: it was not exported by perception '
                          f'(metadata {META_FORMAT!r} is {meta.get(META_FORMAT)!r}; {desc})')
    if meta.get(META_MODEL_ID) != manifest['model_id']:
        raise DeployError(f'{MANIFEST_NAME} does not belong to {path}: model_id {manifest["model_id"]!r} in the '
                          f'manifest, {meta.get(META_MODEL_ID)!r} in the model')
    if len(ins) != 1 or len(outs) != 1:
        raise DeployError(f'{path}: expected one input and one output, got {desc}')
    i, o = ins[0], outs[0]
    name = manifest['input']['name']
    if i.name != name:
        raise DeployError(f'{MANIFEST_NAME} does not match {path}: manifest input name {name!r}, model input '
                          f'{i.name!r}')
    if len(i.shape) != 4 or i.shape[1] != 3:
        raise DeployError(f'{path}: input {i.name!r} has shape {i.shape}, expected [batch, 3, height, width]')
    n = manifest['num_classes']
    if len(o.shape) != 4 or o.shape[1] != n:
        raise DeployError(f'{MANIFEST_NAME} does not match {path}: manifest has {n} classes, the model outputs '
                          f'{o.shape[1] if len(o.shape) == 4 else o.shape} channels (output {o.name!r} {o.shape})')
    if META_NUM_CLASSES in meta and int(meta[META_NUM_CLASSES]) != n:
        raise DeployError(f'{MANIFEST_NAME} does not match {path}: manifest has {n} classes, model metadata '
                          f'{meta[META_NUM_CLASSES]}')
    p = manifest['patch_size']
    if META_PATCH_SIZE in meta and int(meta[META_PATCH_SIZE]) != p:
        raise DeployError(f'{MANIFEST_NAME} does not match {path}: patch_size {p} in the manifest, '
                          f'{meta[META_PATCH_SIZE]} in the model')
    d = manifest.get('size_divisor') or p
    if META_SIZE_DIVISOR in meta and int(meta[META_SIZE_DIVISOR]) != d:
        raise DeployError(f'{MANIFEST_NAME} does not match {path}: size_divisor {d} in the manifest, '
                          f'{meta[META_SIZE_DIVISOR]} in the model')
    if 'output' in manifest['onnx'] and manifest['onnx']['output'] != o.name:
        raise DeployError(f'{MANIFEST_NAME} does not match {path}: manifest output {manifest["onnx"]["output"]!r}, '
                          f'model output {o.name!r}')
