"""Test-time behaviour shared by PyTorch inference and the exported runtime.

mmseg's ``EncoderDecoder`` runs the network on crop-sized sliding windows (``slide``) or on the whole
resized image (``whole``). Where mmseg itself cannot run a ViT, because a window or the whole image
has a side that is not a multiple of the patch size (an image smaller than the crop, a keep-ratio
resize, ``whole`` mode), this project applies one documented rule, in ``tools/infer.py`` and in
``perception.deploy`` alike: the network input is padded at the bottom and right with zeros (the
mean colour, after normalisation) to a multiple of the patch size, and at least ``min_size``; the
logits are computed for the padded input and cropped back. Where mmseg can run, nothing changes.
"""
from typing import Sequence, Tuple

import torch.nn.functional as F

from ..deploy.runtime import padded_size  # the one copy of the rule's arithmetic (torch-free)


def min_input_size(segmentor) -> int:
    """The smallest network input side: one patch, two with a pyramid neck (it halves the grid)."""
    p = int(segmentor.backbone.patch_size)
    return 2 * p if getattr(segmentor, 'with_neck', False) else p


def _pair(v, what: str) -> Tuple[int, int]:
    if isinstance(v, int):
        return v, v
    if isinstance(v, (list, tuple)) and len(v) == 2 and all(isinstance(i, int) for i in v):
        return int(v[0]), int(v[1])
    raise ValueError(f'test_cfg.{what} must be an int or a pair of ints, got {v!r}')


def check_slide(crop: Sequence[int], stride: Sequence[int], patch: int, where: str = 'test_cfg'):
    """Sliding-window settings that can work: positive, crop a multiple of the patch size, stride at
    most the crop (a larger stride leaves pixels no window covers). Raises ``ValueError`` naming them."""
    crop, stride = _pair(crop, 'crop_size'), _pair(stride, 'stride')
    if min(crop) < 1 or min(stride) < 1:
        raise ValueError(f'{where}: slide crop {list(crop)} and stride {list(stride)} must be positive')
    if crop[0] % patch or crop[1] % patch:
        raise ValueError(f'{where}: slide crop {list(crop)} is not a multiple of the patch size {patch}')
    if stride[0] > crop[0] or stride[1] > crop[1]:
        raise ValueError(f'{where}: slide stride {list(stride)} is larger than the crop {list(crop)}: '
                         'pixels between windows would get no prediction')
    return crop, stride


def check_test_cfg(segmentor):
    """The segmentor's ``test_cfg`` names a mode this project runs (``whole`` or a valid ``slide``)."""
    tc = segmentor.test_cfg or {}
    mode = tc.get('mode', 'whole')
    if mode == 'slide':
        check_slide(tc.get('crop_size'), tc.get('stride'), int(segmentor.backbone.patch_size))
    elif mode != 'whole':
        raise ValueError(f'test_cfg.mode {mode!r} is not supported: use "whole" or "slide"')
    return mode


def enable_any_input_size(segmentor):
    """Apply the padding rule of this module to ``segmentor.encode_decode`` (idempotent)."""
    if getattr(segmentor, '_any_input_size', False):
        return segmentor
    check_test_cfg(segmentor)
    patch, min_size = int(segmentor.backbone.patch_size), min_input_size(segmentor)
    encode_decode = segmentor.encode_decode

    def padded_encode_decode(inputs, batch_img_metas):
        h, w = inputs.shape[-2:]
        ph, pw = padded_size(h, w, patch, min_size)
        if (ph, pw) == (h, w):
            return encode_decode(inputs, batch_img_metas)
        x = F.pad(inputs, (0, pw - w, 0, ph - h))
        metas = [dict(m, img_shape=(ph, pw)) for m in batch_img_metas]
        return encode_decode(x, metas)[..., :h, :w]

    segmentor.encode_decode = padded_encode_decode
    segmentor._any_input_size = True
    return segmentor
