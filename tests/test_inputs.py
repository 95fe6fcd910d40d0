"""Issue 27 (items 4, 5, 7): inputs of another type are converted exactly or refused, the same way by both
backends; a bundle's manifest is covered by its own digests; an image whose EXIF orientation the decoder
applies is refused as training data (its label map is read as stored) and announced at inference."""
import json
import logging
import shutil
import struct
import uuid
from pathlib import Path

import cv2
import numpy as np
import pytest

from perception.common.files import sha256_file
from perception.common.images import (ORIENTATIONS, exif_orientation, image_noted, read_image_noted,
                                      to_bgr_uint8)
from perception.deploy import DeployError, load_bundle
from perception.deploy.bundle import (BUNDLE_FORMAT, BUNDLE_VERSION, MANIFEST_NAME, META_FORMAT, META_MODEL_ID,
                                      META_NUM_CLASSES, META_PATCH_SIZE, ONNX_FORMAT_TAG, manifest_digests,
                                      preprocessing_digest)
from perception.deploy.runtime import as_bgr

ROOT = Path(__file__).resolve().parents[1]
DEMO_UPERNET = str(ROOT / 'mmcfg/demo/upernet_internvit-tiny_1xb8-1k_demo-shapes-112x112.py')
CLASSES = ['disc', 'square', 'triangle', 'ring', 'cross', 'hexagon']
PALETTE = [[220, 60, 60], [60, 160, 220], [240, 200, 40], [150, 80, 200], [60, 200, 90], [240, 130, 40]]


def _inputs(h=37, w=50, seed=0):
    """The same picture as uint8, as uint16 and as float32 in [0, 1] (plus the uint8 each converts to)."""
    rng = np.random.default_rng(seed)
    u16 = rng.integers(0, 65536, (h, w, 3), dtype=np.uint16)
    f32 = rng.random((h, w, 3), dtype=np.float32)
    return u16, f32


# ----------------------------------------------------------------------------- 4. the one conversion
def test_uint16_and_float_convert_by_their_documented_range():
    v = np.arange(65536, dtype=np.uint16).reshape(256, 256)
    out, note = to_bgr_uint8(v)
    assert out.dtype == np.uint8 and out.shape == (256, 256, 3)
    want = np.round(v.astype(np.float64) * 255 / 65535).astype(np.uint8)  # no value falls half-way
    assert (out == want[:, :, None]).all()
    assert note == 'a uint16 image was converted to uint8 (value * 255 / 65535, rounded)'
    _, note = to_bgr_uint8(np.full((4, 4, 3), 200, np.uint16))
    assert 'its values are all <= 200: if they are 8-bit values, pass it as uint8' in note

    for dtype in (np.float16, np.float32, np.float64):
        x = (np.arange(256 * 3).reshape(16, 16, 3) % 256 / 255).astype(dtype)
        out, note = to_bgr_uint8(x)
        assert (out.astype(int) == np.arange(256 * 3).reshape(16, 16, 3) % 256).all(), dtype
        assert note == f'a {np.dtype(dtype).name} image in [0, 1] was converted to uint8 (value * 255, rounded)'
    x = np.random.default_rng(1).random((9, 11, 3))
    assert (to_bgr_uint8(x)[0] == np.round(x * 255)).all()

    img = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    out, note = to_bgr_uint8(img)
    assert out is img and note is None  # uint8 as today
    out, note = to_bgr_uint8(img[:, :, 0])
    assert note is None and (out == img[:, :, :1]).all() and out.shape == (5, 7, 3)  # grey: 3 channels
    out, note = to_bgr_uint8(np.dstack([img, np.zeros((5, 7), np.uint8)]))
    assert (out == img).all() and note == 'the 4th channel (alpha) of an H x W x 4 image was dropped'


@pytest.mark.parametrize('arr,want', [
    (np.zeros((4, 4, 3), bool), 'image dtype bool is not accepted: expected uint8 (0-255), uint16 (0-65535, '
                                'scaled) or float in [0, 1] (scaled)'),
    (np.zeros((4, 4, 3), np.int32), 'image dtype int32 is not accepted: expected uint8 (0-255), uint16 (0-65535, '
                                    'scaled) or float in [0, 1] (scaled) (its values are all in 0-255: pass it as '
                                    'uint8)'),
    (np.zeros((4, 4, 3), np.int16), 'image dtype int16 is not accepted'),
    (np.zeros((4, 4, 3), np.uint32), 'image dtype uint32 is not accepted'),
    (np.zeros((4, 4, 3), np.complex64), 'image dtype complex64 is not accepted'),
    (np.full((4, 4, 3), 254.0, np.float32), r'a float32 image must hold values in [0, 1], this one holds [254, 254] '
                                            r'(0-255 values: pass them as uint8)'),
    (np.linspace(-0.5, 1.5, 48).reshape(4, 4, 3), 'a float64 image must hold values in [0, 1], this one holds '
                                                  '[-0.5, 1.5]'),
    (np.array([[[0.1, np.nan, 0.2]]], np.float32), 'a float32 image holds NaN: expected values in [0, 1]'),
    (np.array([[[0.1, np.inf, 0.2]]], np.float32), 'a float32 image holds infinity: expected values in [0, 1]'),
    (np.zeros((4, 4, 2), np.uint8), 'expected an H x W x 3 BGR image (or H x W grey, H x W x 4 BGRA), got an '
                                    'array of shape (4, 4, 2) and dtype uint8'),
    (np.zeros((0, 4, 3), np.uint8), 'empty image of shape (0, 4, 3)'),
])
def test_other_dtypes_and_ranges_are_refused_in_one_line(arr, want):
    with pytest.raises(ValueError) as e:
        to_bgr_uint8(arr)
    assert want in str(e.value) and '\n' not in str(e.value)
    with pytest.raises(ValueError) as e2:  # the runtime's entry point, and so Segmenter.segment / logits
        as_bgr(arr)
    assert str(e2.value) == str(e.value)


def test_pytorch_segment_refuses_before_touching_the_model():
    from perception.inference import segment
    with pytest.raises(ValueError, match='image dtype int32 is not accepted'):
        segment(None, np.zeros((8, 8, 3), np.int32))
    with pytest.raises(ValueError, match=r'this one holds \[0, 2\]'):
        segment(None, np.linspace(0, 2, 8 * 8 * 3).reshape(8, 8, 3).astype(np.float32))


def test_runtime_announces_each_conversion_once_per_call(tmp_path, caplog):
    seg = load_bundle(_tiny_bundle(tmp_path / 'b'))
    u16, f32 = _inputs()
    for x in (u16, f32):
        ref, _ = to_bgr_uint8(x)
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger='perception.deploy'):
            label, over = seg.segment(x)
        notes = [r.getMessage() for r in caplog.records if 'converted to uint8' in r.getMessage()]
        assert len(notes) == 1, notes
        ref_label, ref_over = seg.segment(ref)
        assert (label == ref_label).all() and (over == ref_over).all()  # the overlay shows what was segmented
        assert (seg.predict(x) == ref_label).all()
    with pytest.raises(ValueError, match='image dtype bool is not accepted'):
        seg.segment(u16 > 30000)


# ----------------------------------------------------------------------------- 5. manifest digests
def _tiny_bundle(d: Path, version: int = BUNDLE_VERSION) -> Path:
    """A valid bundle without an export: a hand-made ONNX model (a 1x1 convolution to 6 classes, with
    the exporter's metadata) and the manifest export writes, digests included."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    d.mkdir(parents=True)
    rng = np.random.default_rng(0)
    model_id = uuid.uuid4().hex
    x = helper.make_tensor_value_info('input', TensorProto.FLOAT, ['b', 3, 'h', 'w'])
    y = helper.make_tensor_value_info('logits', TensorProto.FLOAT, ['b', 6, 'h', 'w'])
    inits = [numpy_helper.from_array(rng.standard_normal((6, 3, 1, 1)).astype(np.float32), 'w'),
             numpy_helper.from_array(rng.standard_normal(6).astype(np.float32), 'b')]
    g = helper.make_graph([helper.make_node('Conv', ['input', 'w', 'b'], ['logits'])], 'g', [x], [y], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid('', 17)])
    m.ir_version = 8
    helper.set_model_props(m, {META_FORMAT: ONNX_FORMAT_TAG, META_MODEL_ID: model_id, META_NUM_CLASSES: '6',
                               META_PATCH_SIZE: '14'})
    onnx.save(m, str(d / 'model.onnx'))
    meta = dict(num_classes=6, classes=list(CLASSES), palette=[list(p) for p in PALETTE], patch_size=14,
                min_size=28, input=dict(name='input', layout='NCHW', dtype='float32', color='RGB',
                                        mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375]),
                mode='whole', slide=None, resize=None, align_corners=False)
    if version >= 3:
        meta['digests'] = manifest_digests(meta)
    elif version == 2:
        meta['preprocessing_sha256'] = preprocessing_digest(meta)
    man = dict(format=BUNDLE_FORMAT, version=version, model_id=model_id, **meta,
               onnx=dict(file='model.onnx', dtype='fp32', external_data=[], input='input', output='logits'),
               files={'model.onnx': dict(bytes=(d / 'model.onnx').stat().st_size,
                                         sha256=sha256_file(d / 'model.onnx'))})
    if version == 1:  # before 'mode': read as 'slide'
        del man['mode']
        man['slide'] = dict(crop=[56, 56], stride=[28, 28])
    (d / MANIFEST_NAME).write_text(json.dumps(man, indent=1) + '\n')
    return d


def _edit(bundle: Path, **changes):
    p = bundle / MANIFEST_NAME
    m = json.loads(p.read_text())
    m.update(changes)
    p.write_text(json.dumps(m))
    return m


def _edited_bundles(src: Path, tmp_path: Path):
    """(name, bundle, the key its refusal names): one meaning key of the manifest edited in each."""
    m = json.loads((src / MANIFEST_NAME).read_text())
    edits = {
        'classes': dict(classes=['background'] + m['classes'][1:]),
        'palette': dict(palette=[[0, 0, 0]] + m['palette'][1:]),
        'input': dict(input=dict(m['input'], mean=[0.0, 0.0, 0.0])),
        'align_corners': dict(align_corners=not m['align_corners']),
        'resize': dict(resize={'type': 'fixed', 'size': [56, 56]}),
    }
    for key, change in edits.items():
        b = Path(shutil.copytree(src, tmp_path / f'edit-{key}'))
        _edit(b, **change)
        yield key, b


def test_a_manifest_edited_after_export_is_refused_naming_the_key(tmp_path):
    src = _tiny_bundle(tmp_path / 'src')
    assert load_bundle(src).classes == CLASSES  # untouched: loads
    for key, b in _edited_bundles(src, tmp_path):
        with pytest.raises(DeployError) as e:
            load_bundle(b)
        msg = str(e.value)
        assert msg.startswith(f"{b / MANIFEST_NAME}: manifest key '{key}' does not match its sha256 in 'digests': "
                              'the manifest was edited or damaged after export'), msg
        assert '\n' not in msg
    b = Path(shutil.copytree(src, tmp_path / 'two'))
    _edit(b, classes=CLASSES[::-1], palette=PALETTE[::-1])
    with pytest.raises(DeployError, match=r"manifest keys 'classes', 'palette' do not match their sha256"):
        load_bundle(b)
    b = Path(shutil.copytree(src, tmp_path / 'no-digests'))
    m = _edit(b)
    del m['digests']['palette']
    (b / MANIFEST_NAME).write_text(json.dumps(m))
    with pytest.raises(DeployError, match=r"manifest key 'digests' misses the sha256 of \['palette'\]"):
        load_bundle(b)
    b = Path(shutil.copytree(src, tmp_path / 'nothing'))
    m = _edit(b)
    del m['digests']
    (b / MANIFEST_NAME).write_text(json.dumps(m))
    with pytest.raises(DeployError, match=r"manifest misses key\(s\) \['digests'\]"):
        load_bundle(b)
    b = Path(shutil.copytree(src, tmp_path / 'harmless'))
    _edit(b, source={'note': 'edited by hand'})  # not a meaning key: loads
    load_bundle(b)


def test_older_bundles_load_with_a_warning_that_their_meaning_is_unchecked(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger='perception.deploy'):
        seg = load_bundle(_tiny_bundle(tmp_path / 'v2', version=2))
    assert seg.mode == 'whole'
    assert any('a version 2 bundle: its classes and palette are not covered by a hash (only its preprocessing is); '
               f'export it again for the checks of version {BUNDLE_VERSION}' in r.getMessage() for r in caplog.records)
    _edit(tmp_path / 'v2', classes=CLASSES[::-1])
    load_bundle(tmp_path / 'v2')  # what the warning says: not checked
    m = json.loads((tmp_path / 'v2' / MANIFEST_NAME).read_text())
    _edit(tmp_path / 'v2', input=dict(m['input'], mean=[0.0, 0.0, 0.0]))
    with pytest.raises(DeployError, match=r'the preprocessing values .* do not match their preprocessing_sha256'):
        load_bundle(tmp_path / 'v2')
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger='perception.deploy'):
        seg = load_bundle(_tiny_bundle(tmp_path / 'v1', version=1))
    assert seg.mode == 'slide'
    assert any('a version 1 bundle: its classes, palette and preprocessing are not covered by a hash'
               in r.getMessage() for r in caplog.records)
    _edit(tmp_path / 'v1', version=BUNDLE_VERSION + 1)
    with pytest.raises(DeployError, match=rf'manifest version {BUNDLE_VERSION + 1} is not supported'):
        load_bundle(tmp_path / 'v1')


# ----------------------------------------------------------------------------- 7. EXIF orientation
def _exif_app1(tag: int, order: str = '<') -> bytes:
    """An APP1 segment with an EXIF TIFF structure whose first IFD holds the orientation ``tag``."""
    bo = b'II' if order == '<' else b'MM'
    tiff = bo + struct.pack(order + 'HI', 42, 8) + struct.pack(order + 'H', 2)
    tiff += struct.pack(order + 'HHI', 0x010F, 2, 4) + b'cam\x00'  # Make, inline: another tag first
    tiff += struct.pack(order + 'HHIH', 0x0112, 3, 1, tag) + b'\x00\x00' + struct.pack(order + 'I', 0)
    body = b'Exif\x00\x00' + tiff
    return b'\xff\xe1' + struct.pack('>H', len(body) + 2) + body


def _jpeg_with_orientation(path: Path, img: np.ndarray, tag: int, order: str = '<') -> Path:
    ok, buf = cv2.imencode('.jpg', img, [cv2.IMWRITE_JPEG_QUALITY, 100])
    raw = buf.tobytes()
    assert ok and raw[:2] == b'\xff\xd8'
    path.write_bytes(raw[:2] + _exif_app1(tag, order) + raw[2:])  # right after SOI, before JFIF's APP0
    return path


def test_the_orientation_reader_and_what_opencv_does(tmp_path):
    img = np.zeros((20, 40, 3), np.uint8)
    img[:5, :10] = 255
    for tag in range(1, 9):
        for order in '<>':
            p = _jpeg_with_orientation(tmp_path / f'{tag}{order == "<"}.jpg', img, tag, order)
            assert exif_orientation(p) == tag
            decoded = cv2.imread(str(p), cv2.IMREAD_COLOR)  # the premise: the decoder turns the pixels
            assert decoded.shape[:2] == ((40, 20) if tag >= 5 else (20, 40)), tag
            assert cv2.imread(str(p), cv2.IMREAD_UNCHANGED).shape[:2] == (20, 40)  # how label maps are read
    cv2.imwrite(str(tmp_path / 'plain.jpg'), img)
    cv2.imwrite(str(tmp_path / 'plain.png'), img)
    (tmp_path / 'junk.jpg').write_bytes(b'\xff\xd8\xff\xe1\x00')
    assert exif_orientation(tmp_path / 'plain.jpg') is None and exif_orientation(tmp_path / 'plain.png') is None
    assert exif_orientation(tmp_path / 'junk.jpg') is None
    from PIL import Image
    ex = Image.Exif()
    ex[0x0112] = 6
    for ext in ('png', 'webp'):  # PNG eXIf and WebP EXIF chunks: OpenCV applies them too
        Image.fromarray(img).save(tmp_path / f'pil.{ext}', exif=ex.tobytes())
        assert exif_orientation(tmp_path / f'pil.{ext}') == 6
        assert cv2.imread(str(tmp_path / f'pil.{ext}'), cv2.IMREAD_COLOR).shape[:2] == (40, 20)


def _exif_dataset(tmp_path, tag, label_tag=None, color_type='color'):
    from mmengine.registry import init_default_scope

    from perception.datasets.segmentation import DemoShapesDataset
    init_default_scope('mmseg')
    root = tmp_path / 'd'
    (root / 'images/training').mkdir(parents=True)
    (root / 'annotations/training').mkdir(parents=True)
    rng = np.random.default_rng(0)
    img = _jpeg_with_orientation(root / 'images/training/a.jpg', rng.integers(0, 256, (28, 28, 3), np.uint8), tag)
    label = rng.integers(1, 7, (28, 28), np.uint8)
    ann = root / 'annotations/training/a.png'
    if label_tag:
        from PIL import Image
        ex = Image.Exif()
        ex[0x0112] = label_tag
        Image.fromarray(label).save(ann, exif=ex.tobytes())
    else:
        cv2.imwrite(str(ann), label)
    pipeline = [dict(type='LoadImageFromFile', color_type=color_type),
                dict(type='LoadAnnotations', reduce_zero_label=True), dict(type='CheckSegMap', num_classes=6),
                dict(type='PackSegInputs')]
    ds = DemoShapesDataset(data_root=str(root), pipeline=pipeline,
                           data_prefix=dict(img_path='images/training', seg_map_path='annotations/training'))
    return ds, img, ann


@pytest.mark.parametrize('tag', [3, 6])
def test_training_data_whose_orientation_the_decoder_applies_is_refused(tmp_path, tag):
    """A square image rotated by the decoder keeps its size: without the check it trains against labels
    turned the other way, silently."""
    ds, img, ann = _exif_dataset(tmp_path, tag)
    with pytest.raises(ValueError) as e:
        ds[0]
    msg = str(e.value)
    assert msg.startswith(f'{img}: EXIF orientation tag {tag}: training decodes this image {ORIENTATIONS[tag]}, '
                          f'but reads its label map {ann} as stored: they would not match'), msg
    assert '\n' not in msg


def test_orientation_cases_that_match_are_accepted_and_a_tagged_label_map_is_named(tmp_path):
    ds, _, _ = _exif_dataset(tmp_path / 'one', 1)  # tag 1: nothing turned
    assert ds[0]['inputs'].shape[1:] == (28, 28)
    ds, _, _ = _exif_dataset(tmp_path / 'ignored', 6, color_type='color_ignore_orientation')  # nothing turned
    assert ds[0]['inputs'].shape[1:] == (28, 28)
    ds, _, ann = _exif_dataset(tmp_path / 'both', 6, label_tag=6)  # the label map's tag is not applied
    with pytest.raises(ValueError, match=rf'label map {ann} as stored \(its own tag 6 is ignored: label maps are '
                                         r'read as stored\)'):
        ds[0]


def test_inference_announces_a_rotation(tmp_path, caplog):
    from perception.deploy import segment_images
    img = np.random.default_rng(0).integers(0, 256, (20, 40, 3), np.uint8)
    p = _jpeg_with_orientation(tmp_path / 'turned.jpg', img, 6)
    out, note = read_image_noted(p)
    assert out.shape[:2] == (40, 20)
    assert note == 'rotated 90 degrees clockwise as its EXIF orientation tag (6) says: the label map is in that ' \
                   'orientation'
    assert image_noted(str(p))[1] == f'{p}: {note}'
    with caplog.at_level(logging.WARNING, logger='perception.deploy'):
        assert as_bgr(p).shape[:2] == (40, 20)  # Segmenter.segment('turned.jpg')
    assert [r.getMessage() for r in caplog.records if 'EXIF' in r.getMessage()] == [f'{p}: {note}']

    class Echo:
        def segment(self, img, alpha=0.5, side_by_side=False):
            return np.zeros(img.shape[:2], np.uint8), img
    msgs = []
    segment_images(Echo(), str(p), str(tmp_path / 'out'), log=lambda m, lvl: msgs.append((lvl, m)))
    assert [m for lvl, m in msgs if lvl == logging.WARNING and 'EXIF orientation tag (6)' in m and str(p) in m]
    assert cv2.imread(str(tmp_path / 'out/turned_label.png'), cv2.IMREAD_UNCHANGED).shape == (40, 20)


# ----------------------------------------------------------------------------- one real export (slow)
@pytest.fixture(scope='module')
def exported(tmp_path_factory):
    """The tiny demo UperNet (random weights) and its ONNX bundle: one export for the module."""
    from perception.export import export_model
    from perception.inference import init_segmentor
    model = init_segmentor(DEMO_UPERNET, random_init=True)
    out = tmp_path_factory.mktemp('bundles') / 'upernet'
    manifest = export_model(model, out, formats=('onnx',), whole_images=1)
    return model, out, manifest


@pytest.mark.slow
def test_both_backends_label_uint16_and_float_images_alike(exported):
    from perception.inference import segment
    model, out, _ = exported
    seg = load_bundle(out)
    u16, f32 = _inputs(61, 90, seed=1)
    for x in (u16, f32):
        ref, _ = to_bgr_uint8(x)
        onnx_label, _ = seg.segment(x)
        torch_label, res = segment(model, x)
        assert (onnx_label == seg.segment(ref)[0]).all()  # each backend: exactly the converted uint8 image
        assert (torch_label == segment(model, ref)[0]).all()
        agree = float((onnx_label == torch_label).mean())
        diff = float(np.abs(seg.logits(x) - res.seg_logits.data.numpy()).max())
        assert agree >= 0.999 and diff < 1e-3, (x.dtype, agree, diff)
    for bad in (f32 * 255, u16.astype(np.int32)):
        with pytest.raises(ValueError) as a:
            seg.segment(bad)
        with pytest.raises(ValueError) as b:
            segment(model, bad)
        assert str(a.value) == str(b.value)


@pytest.mark.slow
def test_an_exported_manifest_carries_digests_and_refuses_edits(exported, tmp_path):
    _, out, m = exported
    written = json.loads((out / MANIFEST_NAME).read_text())
    assert written['version'] == BUNDLE_VERSION == 4 and 'preprocessing_sha256' not in written
    assert written['size_divisor'] == written['patch_size']  # a plain ViT pads to its patch (v4 records it)
    assert written['digests'] == manifest_digests(written) == m['digests']
    load_bundle(out)
    for key, b in _edited_bundles(out, tmp_path):
        with pytest.raises(DeployError, match=rf"manifest key '{key}' does not match its sha256 in 'digests'"):
            load_bundle(b)
