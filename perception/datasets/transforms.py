"""Data transforms mmseg lacks."""
from typing import Optional

import mmcv
from mmcv.transforms import BaseTransform
from ..registry import register


@register('TRANSFORMS', 'mmseg')
class ResizeShortSide(BaseTransform):
    """Resize so the short side is exactly ``short_side`` (no long-side cap unless ``max_long_side``),
    then round both sides to the nearest multiple of ``size_divisor`` (InternVL's ADE20K test resize).

    Updates ``img``, ``img_shape``, ``scale_factor`` (w, h) and ``keep_ratio``; resizes a loaded
    ``gt_seg_map`` with nearest neighbour.
    """

    def __init__(self, short_side: int, size_divisor: int = 1, max_long_side: Optional[int] = None,
                 interpolation: str = 'bilinear'):
        self.short_side = short_side
        self.size_divisor = size_divisor
        self.max_long_side = max_long_side
        self.interpolation = interpolation

    def target_size(self, h: int, w: int):
        scale = self.short_side / min(h, w)
        if self.max_long_side and max(h, w) * scale > self.max_long_side:
            scale = self.max_long_side / max(h, w)
        d = self.size_divisor
        nh = max(d, int(round(h * scale / d)) * d)
        nw = max(d, int(round(w * scale / d)) * d)
        return nh, nw

    def transform(self, results: dict) -> dict:
        img = results['img']
        h, w = img.shape[:2]
        nh, nw = self.target_size(h, w)
        results['img'] = mmcv.imresize(img, (nw, nh), interpolation=self.interpolation)
        results['img_shape'] = (nh, nw)
        results['scale_factor'] = (nw / w, nh / h)
        results['keep_ratio'] = True
        if results.get('gt_seg_map') is not None:
            results['gt_seg_map'] = mmcv.imresize(results['gt_seg_map'], (nw, nh), interpolation='nearest')
        return results

    def __repr__(self):
        return (f'{type(self).__name__}(short_side={self.short_side}, size_divisor={self.size_divisor}, '
                f'max_long_side={self.max_long_side})')
