"""Int pairs and sliding-window arithmetic shared by PyTorch inference, export and the deploy runtime."""
from numbers import Integral
from typing import List, Optional, Sequence, Tuple


def int_pair(v) -> Tuple[int, int]:
    """``5`` -> ``(5, 5)``; a pair -> two ints; anything else: ValueError."""
    if isinstance(v, Integral):
        return int(v), int(v)
    v = list(v)
    if len(v) != 2:
        raise ValueError(f'expected an int or a pair, got {v!r}')
    return int(v[0]), int(v[1])


def is_int_pair(v) -> bool:
    """A list or tuple of two positive ints (a manifest's ``[h, w]``)."""
    return isinstance(v, (list, tuple)) and len(v) == 2 and all(isinstance(i, int) and i > 0 for i in v)


def _pair(v, what: str) -> Tuple[int, int]:
    if isinstance(v, int):
        return v, v
    if isinstance(v, (list, tuple)) and len(v) == 2 and all(isinstance(i, int) for i in v):
        return int(v[0]), int(v[1])
    raise ValueError(f'{what} must be an int or a pair of ints, got {v!r}')


def check_slide(crop, stride, patch: int, where: Optional[str] = 'test_cfg') -> Tuple[Tuple[int, int], Tuple[int, int]]:
    """Sliding-window settings that can work: positive, crop a multiple of the patch size, stride at
    most the crop (a larger stride leaves pixels no window covers). Returns ``(crop, stride)`` as int
    pairs; raises ``ValueError`` naming them (prefixed with ``where:`` when given)."""
    pre = f'{where}: ' if where else ''
    crop = _pair(crop, f'{where}.crop_size' if where else 'crop')
    stride = _pair(stride, f'{where}.stride' if where else 'stride')
    if min(crop) < 1 or min(stride) < 1:
        raise ValueError(f'{pre}slide crop {list(crop)} and stride {list(stride)} must be positive')
    if crop[0] % patch or crop[1] % patch:
        raise ValueError(f'{pre}slide crop {list(crop)} is not a multiple of the patch size {patch}')
    if stride[0] > crop[0] or stride[1] > crop[1]:
        raise ValueError(f'{pre}slide stride {list(stride)} is larger than the crop {list(crop)}: '
                         'pixels between windows would get no prediction')
    return crop, stride


def padded_size(h: int, w: int, patch: int, min_size: int) -> Tuple[int, int]:
    """The network input for an ``h x w`` window or image: padded at the bottom/right to a multiple of
    the patch size, and to ``min_size`` (the rule of ``perception/segmentation/padding.py``)."""
    return max(-(-h // patch) * patch, min_size), max(-(-w // patch) * patch, min_size)


def window_boxes(h: int, w: int, crop: Sequence[int], stride: Sequence[int]) -> List[Tuple[int, int, int, int]]:
    """mmseg's slide-inference windows ``(y1, y2, x1, x2)``; windows are ``min(crop, size)`` large."""
    (ch, cw), (sh, sw) = crop, stride
    h_grids = max(h - ch + sh - 1, 0) // sh + 1
    w_grids = max(w - cw + sw - 1, 0) // sw + 1
    boxes = []
    for i in range(h_grids):
        for j in range(w_grids):
            y1, x1 = i * sh, j * sw
            y2, x2 = min(y1 + ch, h), min(x1 + cw, w)
            boxes.append((max(y2 - ch, 0), y2, max(x2 - cw, 0), x2))
    return boxes


