"""Test-time augmentation for every segmentation config: mmseg's ``SegTTAModel`` (softmax of each
view, averaged) over multi-scale + flip views built from the config's own test resize.

The views: the test resize scaled by each ratio (ADE20K's 0.5, 0.75, 1.0, 1.25, 1.5, 1.75 by
default), each size rounded to a multiple of the patch size (14), or of the test resize's own
``size_divisor`` when larger (32 for the ViT-Adapter demo configs), as the single-scale resize is, each
with and without a horizontal flip; the config's ``test_cfg`` (slide windows for the ADE20K configs)
runs on every view, and the logits are resized back to the image before averaging."""
import copy
from typing import List, Sequence

ADE20K_RATIOS = (0.5, 0.75, 1.0, 1.25, 1.5, 1.75)


def _round(v: float, divisor: int) -> int:
    return max(divisor, int(round(v / divisor)) * divisor)


def scaled_resize(step: dict, ratio: float, divisor: int = 14) -> dict:
    """The test resize ``step`` at ``ratio`` (sizes rounded to ``divisor``)."""
    s = copy.deepcopy(step)
    kind = s.get('type')
    if kind == 'ResizeShortSide':
        s['short_side'] = _round(s['short_side'] * ratio, divisor)
        if s.get('max_long_side'):
            s['max_long_side'] = _round(s['max_long_side'] * ratio, divisor)
        s['size_divisor'] = divisor
    elif kind == 'Resize' and s.get('scale') is not None:
        sc = s['scale']
        s['scale'] = (_round(sc[0] * ratio, divisor), _round(sc[1] * ratio, divisor)) if isinstance(
            sc, (list, tuple)) else _round(sc * ratio, divisor)
    else:
        raise ValueError(f'test-time augmentation: cannot scale the test resize {step} (expected ResizeShortSide '
                         'or Resize with a scale)')
    return s


def tta_pipeline(test_pipeline: Sequence[dict], ratios: Sequence[float] = ADE20K_RATIOS, flip: bool = True,
                 divisor: int = 14) -> List[dict]:
    """``test_pipeline`` as mmseg's ``TestTimeAug``: load, then [each scaled resize] x [no flip, flip],
    then the steps after the resize (annotations, checks, packing) once per view."""
    steps = [copy.deepcopy(t) for t in test_pipeline]
    idx = [i for i, t in enumerate(steps) if t.get('type') in ('ResizeShortSide', 'Resize')]
    if len(idx) != 1 or idx[0] == 0:
        raise ValueError(f'test-time augmentation needs one ResizeShortSide / Resize step after the image is '
                         f'loaded in test_pipeline, found {[t.get("type") for t in steps]}')
    if not ratios or any(float(r) <= 0 for r in ratios):
        raise ValueError(f'test-time augmentation ratios must be positive, got {list(ratios)}')
    i = idx[0]
    views = [[scaled_resize(steps[i], float(r), divisor) for r in ratios]]
    if flip:
        views.append([dict(type='RandomFlip', prob=0.0, direction='horizontal'),
                      dict(type='RandomFlip', prob=1.0, direction='horizontal')])
    views += [[t] for t in steps[i + 1:]]
    return steps[:i] + [dict(type='TestTimeAug', transforms=views)]


def enable_tta(cfg, ratios: Sequence[float] = ADE20K_RATIOS, flip: bool = True):
    """Make ``cfg`` test with TTA (what ``tools/test.py --tta`` does): its own ``tta_pipeline`` /
    ``tta_model`` when it has them, else the views above from its ``test_pipeline``; the test
    dataloader then yields every view of an image and ``SegTTAModel`` wraps the segmentor."""
    sizes = [int(t.get('size_divisor') or 0) for t in cfg.test_pipeline if t.get('type') == 'ResizeShortSide']
    divisor = max(sizes + [14])  # the patch size of every InternViT release; the config's own rounding
    pipe = cfg.get('tta_pipeline') or tta_pipeline(cfg.test_pipeline, ratios, flip, divisor)
    cfg.tta_pipeline = pipe
    cfg.test_dataloader.dataset.pipeline = pipe
    tta = dict(cfg.get('tta_model') or dict(type='SegTTAModel'))
    tta['module'] = cfg.model
    cfg.model = tta
    return cfg
