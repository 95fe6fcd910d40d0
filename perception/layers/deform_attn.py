"""Multi-scale deformable attention (Deformable DETR's, with ViT-Adapter's value-width ``ratio``).

One module, :class:`MSDeformAttn`, with the parameter names of InternVL-MMDetSeg's
``ops/deformable_attention/modules/ms_deform_attn.py`` (``sampling_offsets``, ``attention_weights``,
``value_proj``, ``output_proj``; ``value_proj`` maps the width to ``width * ratio``), so the fork's
checkpoints load. The sampling itself, :func:`multi_scale_deformable_attn`, runs mmcv 2.x's compiled op
(``MultiScaleDeformableAttnFunction``) on CUDA tensors (the pure-PyTorch ``grid_sample`` path where mmcv's
op cannot be imported: one warning); elsewhere (CPU, ``meta``, any non-CUDA device) it runs
:func:`ms_deform_attn_gather`, one ``embedding_bag`` over all levels (on CPU a forward several times faster
than ``grid_sample``'s, forward + backward about as fast or faster), except while a graph is traced or
exported (``torch.jit.trace``, ``torch.export``, ``torch.compile``, the ONNX exporter), where it runs
:func:`ms_deform_attn_pytorch` (``grid_sample``, the op the exported graphs and the ONNX runtime know). All
paths compute the same bilinear sampling (zero padding, ``align_corners=False``) in float32 (float64 stays
float64) on the same parameters. mmcv is imported only inside the CUDA branch: the layers import no
OpenMMLab at import time.
"""
import functools
import math
import warnings
from typing import Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from .autocast import autocast_off, compute_dtype

Shapes = Sequence[Tuple[int, int]]


def grid_reference_points(shapes: Shapes, device=None) -> torch.Tensor:
    """Centres of every cell of the grids ``shapes`` (row-major, grid after grid), normalised to
    [0, 1] as ``(x, y)``: ``[1, sum(h*w), 1, 2]`` float32 (one reference point shared by all levels)."""
    pts = []
    for h, w in shapes:
        ys = (torch.arange(h, dtype=torch.float32, device=device) + 0.5) / h
        xs = (torch.arange(w, dtype=torch.float32, device=device) + 0.5) / w
        gy, gx = torch.meshgrid(ys, xs, indexing='ij')
        pts.append(torch.stack([gx.reshape(-1), gy.reshape(-1)], -1))
    return torch.cat(pts, 0)[None, :, None]


def level_sizes(shapes: Shapes, device=None, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """``[levels, 2]`` ``(w, h)`` of each level (float32 unless ``dtype``). Built with tensor arithmetic
    rather than ``torch.tensor(list)``, so sizes that are symbolic while ``torch.export`` traces stay symbolic."""
    ex, ey = torch.eye(2, dtype=dtype, device=device)
    return torch.stack([ex * w + ey * h for h, w in shapes])


def ms_deform_attn_pytorch(value: torch.Tensor, shapes: Shapes, locations: torch.Tensor,
                           weights: torch.Tensor) -> torch.Tensor:
    """The sampling in plain PyTorch: bilinear ``grid_sample`` (zero padding, ``align_corners=False``)
    per level, weighted sum over levels x points.

    value ``[B, S, heads, D]`` (the levels' maps flattened one after the other), locations
    ``[B, Q, heads, levels, points, 2]`` as (x, y) in [0, 1], weights ``[B, Q, heads, levels, points]``.
    Returns ``[B, Q, heads * D]``.
    """
    B, _, M, D = value.shape
    _, Q, _, _, P, _ = locations.shape
    grids = 2 * locations - 1
    out = value.new_zeros(B * M, D, Q)
    for lvl, v in enumerate(value.split([h * w for h, w in shapes], dim=1)):
        h, w = shapes[lvl]
        v = v.permute(0, 2, 3, 1).reshape(B * M, D, h, w)
        g = grids[:, :, :, lvl].transpose(1, 2).reshape(B * M, Q, P, 2)
        s = F.grid_sample(v, g, mode='bilinear', padding_mode='zeros', align_corners=False)  # [B*M, D, Q, P]
        a = weights[:, :, :, lvl].transpose(1, 2).reshape(B * M, 1, Q, P)
        out = out + (s * a).sum(-1)
    return out.view(B, M * D, Q).transpose(1, 2).contiguous()


def ms_deform_attn_gather(value: torch.Tensor, shapes: Shapes, locations: torch.Tensor,
                          weights: torch.Tensor) -> torch.Tensor:
    """The sampling of :func:`ms_deform_attn_pytorch` (same arguments, same result) as ONE weighted
    ``embedding_bag`` over all levels. On CPU its forward is several times faster than per-level
    ``grid_sample``, which samples channels-first and needs a weighted sum and a transpose copy afterwards;
    its backward (``embedding_bag``'s own, which sorts the indices) is about as fast as ``grid_sample``'s
    (``python -m benchmarks.deform_sampling``).

    The table is ``value`` as ``[B * heads * S, D]`` (channels-last rows); the bag of each (batch, query,
    head) holds levels x points x 4 bilinear corners, so the output ``[B * Q * heads, D]`` is already
    ``[B, Q, heads * D]`` (within a bag: corner, level, point). A corner's weight is its bilinear weight
    times the attention weight, times 0 outside the map (zero padding; its out-of-range coordinate is set
    to 0, so every index stays valid, even for NaN locations, whose NaN weights then propagate as
    ``grid_sample``'s do). Pixel coordinates are ``x * w - 0.5`` (``align_corners=False``). Gradients
    reach ``value`` (the table), ``weights`` and ``locations`` (through the bilinear weights: ``floor`` is
    piecewise constant, as in ``grid_sample``'s grid gradient).
    """
    B, S, M, D = value.shape
    _, Q, _, L, P, _ = locations.shape
    dev, dt = value.device, locations.dtype
    N, K = B * Q * M, L * P  # bags, (level, point) pairs per bag
    # every step below works on contiguous [N, K] tensors: broadcasting over small trailing dims (the x/y
    # pair, the 2 x 2 corners) makes elementwise kernels several times slower than the gather itself
    size = level_sizes(shapes, dev, torch.long)  # [L, 2] (w, h), int64: row arithmetic stays exact
    area = size.prod(1)

    def per_point(t):  # [L] -> [K]
        return t.view(L, 1).expand(L, P).reshape(K)
    w, h = per_point(size[:, 0]), per_point(size[:, 1])
    wf, hf = w.to(dt), h.to(dt)
    head = (torch.arange(B, device=dev).view(B, 1, 1) * M + torch.arange(M, device=dev)) * S  # [B, 1, M]
    base = head.expand(B, Q, M).reshape(N, 1) + per_point(area.cumsum(0) - area)  # first row of each level
    loc = locations.reshape(N, K, 2)
    px, py = loc[..., 0] * wf - 0.5, loc[..., 1] * hf - 0.5
    x0, y0 = px.floor().detach(), py.floor().detach()
    fx, fy = px - x0, py - y0
    x1, y1 = x0 + 1, y0 + 1
    inx0, inx1 = (x0 >= 0) & (x0 < wf), (x1 >= 0) & (x1 < wf)
    iny0, iny1 = (y0 >= 0) & (y0 < hf), (y1 >= 0) & (y1 < hf)
    a = weights.reshape(N, K)
    wx0, wx1 = (1 - fx) * inx0, fx * inx1
    wy0, wy1 = (1 - fy) * iny0 * a, fy * iny1 * a
    wt = torch.stack([wy0 * wx0, wy0 * wx1, wy1 * wx0, wy1 * wx1], 1).view(N, 4 * K)
    cx0, cx1 = torch.where(inx0, x0, 0).long(), torch.where(inx1, x1, 0).long()
    r0 = base + torch.where(iny0, y0, 0).long() * w
    r1 = base + torch.where(iny1, y1, 0).long() * w
    idx = torch.stack([r0 + cx0, r0 + cx1, r1 + cx0, r1 + cx1], 1).view(N, 4 * K)
    table = value.permute(0, 2, 1, 3).reshape(B * M * S, D)
    out = F.embedding_bag(idx, table, per_sample_weights=wt, mode='sum')  # [B * Q * M, D]
    return out.view(B, Q, M * D)


@functools.lru_cache(maxsize=None)
def mmcv_function():
    """mmcv's compiled ``MultiScaleDeformableAttnFunction``, or None (with one warning) when mmcv or its
    compiled ops cannot be imported."""
    try:
        from mmcv.ops.multi_scale_deform_attn import MultiScaleDeformableAttnFunction
    except Exception as e:  # ImportError, or an mmcv built without ops
        warnings.warn(f'multi-scale deformable attention: mmcv\'s CUDA op is not importable ({type(e).__name__}: '
                      f'{e}); using the pure-PyTorch path (same numbers, more memory and time)',
                      RuntimeWarning, stacklevel=3)
        return None
    return MultiScaleDeformableAttnFunction


def im2col_step_for(batch: int, step: int = 64) -> int:
    """mmcv's op needs the batch to be a multiple of ``min(batch, im2col_step)``."""
    return step if batch <= step or batch % step == 0 else math.gcd(batch, step)


def graph_is_traced() -> bool:
    """True while ``torch.jit.trace``, ``torch.export`` (strict or not), ``torch.compile`` or the ONNX
    exporter records a graph: the sampling then runs ``grid_sample`` (an op every exporter and runtime
    knows), not ``embedding_bag``."""
    return (torch.jit.is_tracing() or torch.onnx.is_in_onnx_export() or torch.compiler.is_compiling()
            or torch.compiler.is_exporting())


def multi_scale_deformable_attn(value: torch.Tensor, shapes: Shapes, locations: torch.Tensor,
                                weights: torch.Tensor) -> torch.Tensor:
    """Deformable sampling in float32 (returned in ``value``'s dtype): mmcv's op on CUDA (else
    :func:`ms_deform_attn_pytorch`); on other devices :func:`ms_deform_attn_gather`, or
    :func:`ms_deform_attn_pytorch` while a graph is traced (:func:`graph_is_traced`). Shapes as in
    :func:`ms_deform_attn_pytorch`."""
    dtype = value.dtype
    compute = dtype if dtype == torch.float64 else torch.float32
    value, locations, weights = value.to(compute), locations.to(compute), weights.to(compute)
    fn = mmcv_function() if value.is_cuda else None
    with autocast_off(value.device.type):
        if fn is not None:
            ss = torch.as_tensor(list(shapes), dtype=torch.long, device=value.device).view(-1, 2)
            start = torch.cat([ss.new_zeros(1), ss.prod(1).cumsum(0)[:-1]])
            out = fn.apply(value.contiguous(), ss, start, locations.contiguous(), weights.contiguous(),
                           im2col_step_for(value.shape[0]))
        elif value.is_cuda or graph_is_traced():
            out = ms_deform_attn_pytorch(value, shapes, locations, weights)
        else:
            out = ms_deform_attn_gather(value, shapes, locations, weights)
    return out.to(dtype)


class MSDeformAttn(nn.Module):
    """Multi-scale deformable attention with a reduced value width (``int(d_model * ratio)``).

    ``forward(query [B, Q, d], reference_points [1|B, Q, 1|levels, 2], feat [B, S, d], shapes)``:
    ``shapes`` lists the ``(h, w)`` of the levels ``feat`` concatenates. Offsets are in cells of each
    level (divided by its (w, h)); the weights are a softmax over levels x points per head.
    """

    def __init__(self, d_model: int = 256, n_levels: int = 4, n_heads: int = 8, n_points: int = 4,
                 ratio: float = 1.0):
        super().__init__()
        self.value_dims = int(d_model * ratio)
        if self.value_dims < 1 or self.value_dims % n_heads:
            raise ValueError(f'deformable attention: {n_heads} heads do not divide the value width '
                             f'{self.value_dims} (= int({d_model} x ratio {ratio}))')
        self.d_model, self.n_levels, self.n_heads, self.n_points = d_model, n_levels, n_heads, n_points
        self.ratio = ratio
        self.sampling_offsets = nn.Linear(d_model, n_heads * n_levels * n_points * 2)
        self.attention_weights = nn.Linear(d_model, n_heads * n_levels * n_points)
        self.value_proj = nn.Linear(d_model, self.value_dims)
        self.output_proj = nn.Linear(self.value_dims, d_model)
        self.reset_parameters()

    def reset_parameters(self):
        """Deformable DETR's init: zero offset weights, offset biases on a ring of ``n_heads`` directions
        (point ``i`` at ``i + 1`` cells), uniform attention, Xavier value / output projections."""
        nn.init.zeros_(self.sampling_offsets.weight)
        theta = torch.arange(self.n_heads, dtype=torch.float32) * (2.0 * math.pi / self.n_heads)
        ring = torch.stack([theta.cos(), theta.sin()], -1)
        ring = ring / ring.abs().max(-1, keepdim=True).values
        grid = ring.view(self.n_heads, 1, 1, 2).repeat(1, self.n_levels, self.n_points, 1)
        grid = grid * torch.arange(1, self.n_points + 1, dtype=torch.float32).view(1, 1, -1, 1)
        with torch.no_grad():
            self.sampling_offsets.bias.copy_(grid.reshape(-1))
        nn.init.zeros_(self.attention_weights.weight)
        nn.init.zeros_(self.attention_weights.bias)
        for lin in (self.value_proj, self.output_proj):
            nn.init.xavier_uniform_(lin.weight)
            nn.init.zeros_(lin.bias)

    def sampling(self, query: torch.Tensor, reference_points: torch.Tensor,
                 shapes: Shapes) -> Tuple[torch.Tensor, torch.Tensor]:
        """(locations ``[B, Q, heads, levels, points, 2]``, weights ``[B, Q, heads, levels, points]``), float32."""
        B, Q, _ = query.shape
        M, L, P = self.n_heads, self.n_levels, self.n_points
        query = query.to(compute_dtype(query))  # cast once for both linears (autocast would cast it for each)
        offsets = self.sampling_offsets(query).float().view(B, Q, M, L, P, 2)
        weights = self.attention_weights(query).float().view(B, Q, M, L * P).softmax(-1).view(B, Q, M, L, P)
        norm = level_sizes(shapes, query.device)
        locations = reference_points.float()[:, :, None, :, None, :] + offsets / norm[None, None, None, :, None, :]
        return locations, weights

    def forward(self, query: torch.Tensor, reference_points: torch.Tensor, feat: torch.Tensor,
                shapes: Shapes) -> torch.Tensor:
        shapes = [(h, w) for h, w in shapes]  # ints, or symbolic sizes while tracing (never int(): it freezes them)
        if len(shapes) != self.n_levels or sum(h * w for h, w in shapes) != feat.shape[1]:
            raise ValueError(f'deformable attention over {self.n_levels} level(s): got level shapes {shapes} '
                             f'for {feat.shape[1]} feature tokens')
        B, S, _ = feat.shape
        value = self.value_proj(feat).view(B, S, self.n_heads, self.value_dims // self.n_heads)
        locations, weights = self.sampling(query, reference_points, shapes)
        return self.output_proj(multi_scale_deformable_attn(value, shapes, locations, weights))

    def extra_repr(self) -> str:
        return (f'd_model={self.d_model}, levels={self.n_levels}, heads={self.n_heads}, points={self.n_points}, '
                f'ratio={self.ratio}')

