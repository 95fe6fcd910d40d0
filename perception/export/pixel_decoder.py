"""Mask2Former's pixel decoder (mmdet's ``MSDeformAttnPixelDecoder``) in a form ``torch.export`` can trace
with dynamic input sizes, swapped in only while the graph is traced (:func:`exportable_deform_attn`).

mmdet keeps the level sizes in a tensor (``torch._shape_as_tensor``) and mmcv's
``MultiScaleDeformableAttention`` splits and reshapes its values by reading that tensor back, which a
trace can only turn into data-dependent sizes it cannot relate to the input. The two forwards below
are line-for-line those of mmdet 3.3 / mmcv 2.1 (same modules, same parameters, same order of
operations) with the level sizes kept as Python (symbolic) integers; the sampling is the grid-sample
path that mmcv itself runs on CPU (``multi_scale_deformable_attn_pytorch``), here the project's
:func:`~perception.layers.deform_attn.ms_deform_attn_pytorch` (the same ``grid_sample`` calls). The
exporter verifies the result against the unpatched PyTorch model, so a drift in either copy fails the
export instead of shipping.
"""
import contextlib
import functools
from typing import List, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from ..layers.deform_attn import level_sizes, ms_deform_attn_pytorch
from .errors import ExportError


def deform_attn_forward(attn, query, key=None, value=None, identity=None, query_pos=None, key_padding_mask=None,
                        reference_points=None, spatial_shapes=None, level_start_index=None, **kwargs):
    """mmcv's ``MultiScaleDeformableAttention.forward`` (CPU branch) with ``spatial_shapes`` a list of
    ``(h, w)``."""
    if value is None:
        value = query
    if identity is None:
        identity = query
    if query_pos is not None:
        query = query + query_pos
    if not attn.batch_first:
        query, value = query.permute(1, 0, 2), value.permute(1, 0, 2)
    bs, num_query, _ = query.shape
    bs, num_value, _ = value.shape
    value = attn.value_proj(value)
    if key_padding_mask is not None:
        value = value.masked_fill(key_padding_mask[..., None], 0.0)
    value = value.view(bs, num_value, attn.num_heads, -1)
    M, L, P = attn.num_heads, attn.num_levels, attn.num_points
    offsets = attn.sampling_offsets(query).view(bs, num_query, M, L, P, 2)
    weights = attn.attention_weights(query).view(bs, num_query, M, L * P).softmax(-1).view(bs, num_query, M, L, P)
    if reference_points.shape[-1] != 2:
        raise ExportError('MultiScaleDeformableAttention with 4-d reference boxes is not exportable here (the '
                          'pixel decoder of Mask2Former uses points)')
    norm = level_sizes(spatial_shapes, query.device)  # (w, h) per level
    locations = reference_points[:, :, None, :, None, :] + offsets / norm[None, None, None, :, None, :]
    output = attn.output_proj(ms_deform_attn_pytorch(value, spatial_shapes, locations, weights))
    if not attn.batch_first:
        output = output.permute(1, 0, 2)
    return attn.dropout(output) + identity


def pixel_decoder_forward(dec, feats: List[torch.Tensor]) -> Tuple[torch.Tensor, List[torch.Tensor]]:
    """mmdet's ``MSDeformAttnPixelDecoder.forward`` with the level sizes as (symbolic) integers."""
    batch_size = feats[0].shape[0]
    inputs, masks, pos, shapes, points = [], [], [], [], []
    for i in range(dec.num_encoder_levels):
        level_idx = dec.num_input_levels - i - 1
        feat = feats[level_idx]
        feat_projected = dec.input_convs[i](feat)
        h, w = feat.shape[-2:]
        padding_mask = feat.new_zeros((batch_size, h, w), dtype=torch.bool)  # no padding
        level_pos_embed = dec.level_encoding.weight[i].view(1, -1, 1, 1) + dec.postional_encoding(padding_mask)
        ref = dec.point_generator.single_level_grid_priors((h, w), level_idx, device=feat.device)
        ref = ref / (level_sizes([(h, w)], feat.device)[0] * dec.strides[level_idx])
        inputs.append(feat_projected.flatten(2).permute(0, 2, 1))
        pos.append(level_pos_embed.flatten(2).permute(0, 2, 1))
        masks.append(padding_mask.flatten(1))
        shapes.append((h, w))
        points.append(ref)
    reference_points = torch.cat(points, dim=0)[None, :, None].repeat(batch_size, 1, dec.num_encoder_levels, 1)
    memory = dec.encoder(query=torch.cat(inputs, dim=1), query_pos=torch.cat(pos, dim=1),
                         key_padding_mask=torch.cat(masks, dim=1), spatial_shapes=shapes,
                         reference_points=reference_points, level_start_index=None,
                         valid_ratios=reference_points.new_ones((batch_size, dec.num_encoder_levels, 2)))
    memory = memory.permute(0, 2, 1)
    outs = [x.reshape(batch_size, -1, h, w)
            for x, (h, w) in zip(torch.split(memory, [h * w for h, w in shapes], dim=-1), shapes)]
    for i in range(dec.num_input_levels - dec.num_encoder_levels - 1, -1, -1):
        cur_feat = dec.lateral_convs[i](feats[i])
        y = cur_feat + F.interpolate(outs[-1], size=cur_feat.shape[-2:], mode='bilinear', align_corners=False)
        outs.append(dec.output_convs[i](y))
    return dec.mask_feature(outs[-1]), outs[:dec.num_outs]


def _swappable() -> List[Tuple[type, object]]:
    """(class, export forward) for the classes installed here; none without mmdet / mmcv."""
    pairs = []
    with contextlib.suppress(ImportError):
        from mmcv.ops.multi_scale_deform_attn import MultiScaleDeformableAttention
        pairs.append((MultiScaleDeformableAttention, deform_attn_forward))
    with contextlib.suppress(ImportError):
        from mmdet.models.layers.msdeformattn_pixel_decoder import MSDeformAttnPixelDecoder
        pairs.append((MSDeformAttnPixelDecoder, pixel_decoder_forward))
    return pairs


@contextlib.contextmanager
def exportable_deform_attn(module: nn.Module):
    """While tracing: every mmdet ``MSDeformAttnPixelDecoder`` and mmcv ``MultiScaleDeformableAttention``
    under ``module`` whose ``forward`` is the library's own (a subclass that overrides it is left alone and
    fails the trace loudly rather than being replaced by a forward it does not run) runs the forwards
    above. Restored on exit."""
    swapped = []
    kinds = _swappable()
    if kinds:
        for m in module.modules():
            for cls, fn in kinds:
                if isinstance(m, cls) and type(m).forward is cls.forward:
                    m.forward = functools.partial(fn, m)
                    swapped.append(m)
    try:
        yield module
    finally:
        for m in swapped:
            del m.forward
