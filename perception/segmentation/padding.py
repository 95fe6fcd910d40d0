"""Test-time behaviour shared by PyTorch inference and the exported runtime.

mmseg's ``EncoderDecoder`` runs the network on crop-sized sliding windows (``slide``) or on the whole
resized image (``whole``). Where mmseg itself cannot run a ViT, because a window or the whole image
has a side that is not a multiple of the patch size (an image smaller than the crop, a keep-ratio
resize, ``whole`` mode), this project applies one documented rule, in ``tools/infer.py`` and in
``perception.deploy`` alike: the network input is padded at the bottom and right with zeros (the
mean colour, after normalisation) to a multiple of the backbone's ``size_divisor`` (the patch size
of a plain ViT; 32 for ``InternViTAdapter``, whose spatial prior module needs it), and at least
``min_size``; the logits are computed for the padded input and cropped back. Where mmseg can run,
nothing changes.
"""
import torch.nn.functional as F

from ..common.geometry import check_slide, padded_size  # the one copy of the rule's arithmetic


def input_multiple(segmentor) -> int:
    """The sides of a network input must be multiples of this: the backbone's ``size_divisor`` when it has
    one (``InternViTAdapter``: 32), else its patch size."""
    b = segmentor.backbone
    return int(getattr(b, 'size_divisor', None) or b.patch_size)


def min_input_size(segmentor) -> int:
    """The smallest network input side: one patch, two with a pyramid neck (it halves the grid); one
    ``size_divisor`` for a backbone that has its own (the adapter's pyramid is built in)."""
    if getattr(segmentor.backbone, 'size_divisor', None):
        return input_multiple(segmentor)
    p = int(segmentor.backbone.patch_size)
    return 2 * p if getattr(segmentor, 'with_neck', False) else p


def check_test_cfg(segmentor):
    """The segmentor's ``test_cfg`` names a mode this project runs (``whole`` or a valid ``slide``)."""
    tc = segmentor.test_cfg or {}
    mode = tc.get('mode', 'whole')
    if mode == 'slide':
        check_slide(tc.get('crop_size'), tc.get('stride'), input_multiple(segmentor))
    elif mode != 'whole':
        raise ValueError(f'test_cfg.mode {mode!r} is not supported: use "whole" or "slide"')
    return mode


def enable_any_input_size(segmentor):
    """Apply the padding rule of this module to ``segmentor.encode_decode`` (idempotent)."""
    if getattr(segmentor, '_any_input_size', False):
        return segmentor
    check_test_cfg(segmentor)
    patch, min_size = input_multiple(segmentor), min_input_size(segmentor)
    encode_decode = segmentor.encode_decode

    def padded_encode_decode(inputs, batch_img_metas):
        h, w = inputs.shape[-2:]
        ph, pw = padded_size(h, w, patch, min_size)
        # the network input's size in both keys: Mask2FormerHead sizes its masks by pad_shape, which mmseg's
        # slide windows leave at the whole image's
        metas = [dict(m, img_shape=(ph, pw), pad_shape=(ph, pw)) for m in batch_img_metas]
        if (ph, pw) == (h, w):
            return encode_decode(inputs, metas)
        x = F.pad(inputs, (0, pw - w, 0, ph - h))
        return encode_decode(x, metas)[..., :h, :w]

    segmentor.encode_decode = padded_encode_decode
    segmentor._any_input_size = True
    return segmentor
