"""What a bundle's manifest says about the model: normalisation, classes and palette, patch size,
resize and sliding-window settings (from the config's test pipeline), and the config itself."""
from typing import Dict, Optional, Sequence

from mmengine.logging import print_log

from ..common.geometry import check_slide, int_pair
from ..segmentation.padding import input_multiple, min_input_size
from .errors import ExportError
from .writers import INPUT_NAME


def _test_pipeline(cfg) -> list:
    try:
        return list(cfg.test_dataloader.dataset.pipeline)
    except (AttributeError, KeyError, TypeError):
        return list(cfg.get('test_pipeline') or [])


def resize_spec(cfg) -> Optional[Dict]:
    """The test-time resize of the config's pipeline, in the manifest's terms (None: no resize). A
    resize the runtime cannot reproduce is an ``ExportError`` naming the step."""
    for t in _test_pipeline(cfg):
        typ = t.get('type') if isinstance(t, dict) else None
        if typ == 'ResizeShortSide':
            return dict(type='short_side', short_side=int(t['short_side']),
                        size_divisor=int(t.get('size_divisor', 1) or 1),
                        max_long_side=int(t['max_long_side']) if t.get('max_long_side') else None)
        if typ == 'Resize' and t.get('scale') is not None and t.get('scale_factor') is None:
            if t.get('keep_ratio'):
                return dict(type='keep_ratio', scale=[int(v) for v in int_pair(t['scale'])])
            w, h = int_pair(t['scale'])  # mmcv scales are (w, h)
            return dict(type='fixed', size=[h, w])
        if typ in ('Resize', 'RandomResize', 'ResizeToMultiple', 'TestTimeAug', 'RandomChoiceResize'):
            raise ExportError(f'test pipeline step {t} has no equivalent in the deploy runtime (it reproduces '
                              'ResizeShortSide and Resize with a scale, keep_ratio or not): the exported '
                              'model would label images differently from PyTorch')
    return None


def bundle_metadata(segmentor, slide: Optional[Sequence] = None) -> Dict:
    """Everything the deploy runtime needs besides the model: normalisation, classes, palette, patch
    size and the multiple inputs are padded to (``size_divisor``), sliding window, test resize."""
    cfg = segmentor.cfg
    head = segmentor.decode_head
    n = int(head.num_classes)
    if int(getattr(head, 'out_channels', n)) != n:
        raise ExportError(f'decode head has out_channels={head.out_channels} for {n} classes (sigmoid '
                          'binary segmentation): not supported by the deploy runtime')
    p = getattr(segmentor.backbone, 'patch_size', None)
    if not isinstance(p, int):
        raise ExportError(f'backbone {type(segmentor.backbone).__name__} has no integer patch_size')
    d = input_multiple(segmentor)  # what inputs are padded to: the patch, or the backbone's size_divisor (adapter: 32)
    if d % p:
        raise ExportError(f'backbone {type(segmentor.backbone).__name__}: size_divisor {d} is not a multiple of its '
                          f'patch size {p}')
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
        from ..deploy.runtime import default_palette
        palette = default_palette(n)
    palette = [[int(c) for c in rgb] for rgb in list(palette)[:n]]

    dp = cfg.model.get('data_preprocessor') or {}
    mean, std = dp.get('mean'), dp.get('std')
    if mean is None or std is None or len(mean) != 3 or len(std) != 3:
        raise ExportError(f'model.data_preprocessor needs 3-value mean and std to export, got mean={mean} '
                          f'std={std}')
    color = 'RGB' if dp.get('bgr_to_rgb', False) or dp.get('rgb_to_bgr', False) else 'BGR'

    tc = cfg.model.get('test_cfg') or {}
    mode = 'slide' if slide else tc.get('mode', 'whole')
    if mode == 'slide':
        where = 'slide=(crop, stride)' if slide else 'model.test_cfg'
        try:
            crop, stride = check_slide(slide[0] if slide else tc.get('crop_size'),
                                       slide[1] if slide else tc.get('stride'), d, where)
        except ValueError as e:
            raise ExportError(str(e)) from None
        slide_meta, sample = dict(crop=list(crop), stride=list(stride)), crop
    elif mode == 'whole':
        slide_meta = None
        size = dp.get('size') or cfg.get('crop_size') or (16 * p, 16 * p)
        sample = tuple(max(d, int(round(v / d)) * d) for v in int_pair(size))
    else:
        raise ExportError(f'model.test_cfg.mode {mode!r} is not supported: "whole" or "slide"')
    min_size = min_input_size(segmentor)
    return dict(num_classes=n, classes=classes, palette=palette, patch_size=p, min_size=min_size, size_divisor=d,
                input=dict(name=INPUT_NAME, layout='NCHW', dtype='float32', color=color,
                           mean=[float(v) for v in mean], std=[float(v) for v in std]),
                mode=mode, slide=slide_meta, resize=resize_spec(cfg),
                align_corners=bool(getattr(head, 'align_corners', False)), sample_size=list(sample))


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
