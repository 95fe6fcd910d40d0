"""Data transforms mmseg lacks, and the label-map check the datasets share."""
import os.path as osp
from typing import Optional

import mmcv
import numpy as np
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


def check_png_label_map(path):
    """mmseg's ``LoadAnnotations`` casts to uint8 and squeezes: a 16-bit PNG with labels >= 256 would
    wrap (258 -> 2) and a colour PNG would load as H x W x 3. Read the PNG header (bytes, cheap) and,
    for 16-bit files only, the values; refuse what would change meaning, naming the file."""
    if not (isinstance(path, str) and path.lower().endswith('.png') and osp.isfile(path)):
        return
    with open(path, 'rb') as f:
        head = f.read(26)
    if len(head) < 26 or head[:8] != b'\x89PNG\r\n\x1a\n':
        raise ValueError(f'annotation {path} is not a readable PNG (truncated or another format)')
    depth, color = head[24], head[25]
    if color not in (0, 3):  # grey or palette (palette indices are the labels, as in ADE20K tools)
        kind = {2: 'RGB', 4: 'grey + alpha', 6: 'RGBA'}.get(color, f'colour type {color}')
        raise ValueError(f'annotation {path} is a {kind} PNG: expected one channel of label values')
    if depth == 16:
        import cv2
        seg = cv2.imread(path, cv2.IMREAD_UNCHANGED)
        if seg is not None and seg.max() > 255:
            raise ValueError(f'annotation {path} is a 16-bit PNG with labels up to {int(seg.max())}: '
                             'mmseg reads label maps as 8 bits, so they would wrap (e.g. 258 -> 2)')


@register('TRANSFORMS', 'mmseg')
class CheckSegMap(BaseTransform):
    """Validate a loaded annotation against its image: same size, labels in ``[0, num_classes)`` or
    ``ignore_index``. Errors name the annotation file. Put it right after ``LoadAnnotations``."""

    def __init__(self, num_classes: int, ignore_index: int = 255):
        self.num_classes = num_classes
        self.ignore_index = ignore_index

    def transform(self, results: dict) -> dict:
        seg = results['gt_seg_map']
        path = results.get('seg_map_path', '?')
        check_png_label_map(path)
        ori = results.get('ori_shape') or results['img'].shape[:2]
        if tuple(seg.shape[:2]) != tuple(ori[:2]):
            raise ValueError(f'annotation {path} is {seg.shape[1]}x{seg.shape[0]} but its image '
                             f'{results.get("img_path", "?")} is {ori[1]}x{ori[0]} (W x H)')
        bad = (seg >= self.num_classes) & (seg != self.ignore_index)
        if bad.any():
            vals = sorted(set(np.unique(seg[bad]).tolist()))[:10]
            raise ValueError(f'annotation {path} has label values {vals} outside [0, {self.num_classes}) '
                             f'and != ignore index {self.ignore_index} (after reduce_zero_label)')
        return results

    def __repr__(self):
        return f'{type(self).__name__}(num_classes={self.num_classes}, ignore_index={self.ignore_index})'
