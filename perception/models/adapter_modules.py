"""The parts of ViT-Adapter as InternVL-MMDetSeg builds them
(``mmsegmentation/mmseg/models/backbones/adapter_modules.py``), with the fork's module names so its
checkpoints load: the spatial prior module, the injector, the extractor with its ConvFFN, and the
interaction block that runs a group of ViT blocks between them. Plain PyTorch.

Token layout of the adapter's query sequence ``c``: the stride-8, 16 and 32 maps (``level_shapes``,
2x, 1x and 0.5x the ViT grid) flattened row-major and concatenated.
"""
from typing import Callable, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from ..layers.autocast import autocast_off, compute_dtype
from ..layers.deform_attn import MSDeformAttn, graph_is_traced
from ..layers.drop_path import DropPath
from ..layers.norm import LayerNorm2d, LayerNormFp32

Shapes = Sequence[Tuple[int, int]]
#: the fork builds the interaction blocks with ``norm_layer=nn.LayerNorm``: eps 1e-5 (not 1e-6)
INTERACTION_NORM_EPS = 1e-5
#: the channels-first LayerNorm of the spatial prior module and of the outputs
MAP_NORM_EPS = 1e-6


def pointwise(conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    """A 1x1 ``conv`` (bias included) on the map ``x`` ``[B, Cin, H, W]``, as a matmul: ``[B, H, W, Cout]``."""
    return F.linear(x.permute(0, 2, 3, 1), conv.weight.flatten(1), conv.bias)


def _conv_norm_relu(cin: int, cout: int, stride: int) -> List[nn.Module]:
    return [nn.Conv2d(cin, cout, kernel_size=3, stride=stride, padding=1, bias=False),
            LayerNorm2d(cout, eps=MAP_NORM_EPS), nn.ReLU()]


class SpatialPriorModule(nn.Module):
    """A conv stem (stride 4) and three stride-2 convs: c1..c4 at strides 4, 8, 16, 32 with
    ``inplanes x (1, 2, 4, 4)`` channels, each mapped to ``embed_dims`` by a 1x1 conv (``fc1..fc4``).
    The fork's LayerNorm (channels first, eps 1e-6) follows every 3x3 conv."""

    def __init__(self, inplanes: int = 64, embed_dims: int = 384):
        super().__init__()
        self.stem = nn.Sequential(*_conv_norm_relu(3, inplanes, 2), *_conv_norm_relu(inplanes, inplanes, 1),
                                  *_conv_norm_relu(inplanes, inplanes, 1),
                                  nn.MaxPool2d(kernel_size=3, stride=2, padding=1))
        self.conv2 = nn.Sequential(*_conv_norm_relu(inplanes, 2 * inplanes, 2))
        self.conv3 = nn.Sequential(*_conv_norm_relu(2 * inplanes, 4 * inplanes, 2))
        self.conv4 = nn.Sequential(*_conv_norm_relu(4 * inplanes, 4 * inplanes, 2))
        self.fc1 = nn.Conv2d(inplanes, embed_dims, kernel_size=1)
        self.fc2 = nn.Conv2d(2 * inplanes, embed_dims, kernel_size=1)
        self.fc3 = nn.Conv2d(4 * inplanes, embed_dims, kernel_size=1)
        self.fc4 = nn.Conv2d(4 * inplanes, embed_dims, kernel_size=1)

    def forward(self, x: torch.Tensor):
        """(c1 ``[B, H/4, W/4, C]`` channels last, c2, c3, c4 tokens ``[B, n, C]`` at strides 8, 16, 32).

        The 1x1 convs ``fc1..fc4`` run as matmuls on channels-last maps (the same weights and values): their
        outputs are the adapter's token layout already, and the stride-4 map (``embed_dims`` channels, the
        largest tensor of the adapter) is never transposed."""
        c1 = self.stem(x)
        c2 = self.conv2(c1)
        c3 = self.conv3(c2)
        c4 = self.conv4(c3)
        return (pointwise(self.fc1, c1),
                *(pointwise(fc, c).flatten(1, 2) for fc, c in ((self.fc2, c2), (self.fc3, c3), (self.fc4, c4))))


class DWConv(nn.Module):
    """3x3 depth-wise conv run on each level of the token sequence separately (same weights)."""

    def __init__(self, dim: int):
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, 3, 1, 1, bias=True, groups=dim)

    def forward(self, x: torch.Tensor, level_shapes: Shapes) -> torch.Tensor:
        B, _, C = x.shape
        parts = x.split([h * w for h, w in level_shapes], dim=1)
        return torch.cat([self.dwconv(p.transpose(1, 2).reshape(B, C, h, w)).flatten(2).transpose(1, 2)
                          for p, (h, w) in zip(parts, level_shapes)], dim=1)


class ConvFFN(nn.Module):
    """``fc2(GELU(dwconv(fc1(x))))``."""

    def __init__(self, in_features: int, hidden_features: int):
        super().__init__()
        self.fc1 = nn.Linear(in_features, hidden_features)
        self.dwconv = DWConv(hidden_features)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden_features, in_features)

    def forward(self, x: torch.Tensor, level_shapes: Shapes) -> torch.Tensor:
        return self.fc2(self.act(self.dwconv(self.fc1(x), level_shapes)))


class StreamNorm(LayerNormFp32):
    """The interactions' LayerNorm (``nn.LayerNorm``'s parameters, computed in float32) on a token stream whose
    normalised copy only feeds linears. Without autograd (and outside graph tracing) it is written straight in
    the dtype those linears compute in (autocast's), ``ROWS`` rows at a time: the values autocast's casts would
    give, without a float32 copy of the whole stream (70 MB for the 6B's 5,376 spatial tokens) that is made,
    cast and dropped at once. With autograd it is :class:`LayerNormFp32` as it is."""
    ROWS = 1024

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled() or graph_is_traced() or self.weight is None:
            return super().forward(x)
        flat = x.reshape(-1, x.shape[-1])
        out = torch.empty(flat.shape, dtype=compute_dtype(x), device=x.device)
        w, b = self.weight.float(), self.bias.float()
        with autocast_off(x.device.type):
            for i in range(0, flat.shape[0], self.ROWS):
                out[i:i + self.ROWS] = F.layer_norm(flat[i:i + self.ROWS].float(), self.normalized_shape, w, b,
                                                    self.eps)
        return out.view(x.shape)


class _Checkpointed(nn.Module):
    """``with_cp``: the body recomputed in backward while training (as the fork's ``cp.checkpoint``)."""
    with_cp = False

    def run(self, fn: Callable, *args):
        if self.with_cp and self.training and torch.is_grad_enabled():
            return checkpoint(fn, *args, use_reentrant=False)
        return fn(*args)


class Injector(_Checkpointed):
    """ViT tokens attend to the spatial features: ``x + gamma * attn(query_norm(x), feat_norm(c))``."""

    def __init__(self, dim: int, num_heads: int, n_points: int = 4, n_levels: int = 3, deform_ratio: float = 1.0,
                 init_values: float = 0., with_cp: bool = False):
        super().__init__()
        self.with_cp = with_cp
        self.query_norm = StreamNorm(dim, eps=INTERACTION_NORM_EPS)
        self.feat_norm = StreamNorm(dim, eps=INTERACTION_NORM_EPS)
        self.attn = MSDeformAttn(dim, n_levels, num_heads, n_points, ratio=deform_ratio)
        self.gamma = nn.Parameter(init_values * torch.ones(dim))
        self.init_values = init_values

    def forward(self, query, reference_points, feat, shapes: Shapes):
        def body(query, feat):
            attn = self.attn(self.query_norm(query), reference_points, self.feat_norm(feat), shapes)
            return query + self.gamma * attn
        return self.run(body, query, feat)


class Extractor(_Checkpointed):
    """Spatial features attend to the ViT tokens: ``c + attn(query_norm(c), feat_norm(x))``, then
    ``c + drop_path(ConvFFN(ffn_norm(c)))`` (``with_cffn``)."""

    def __init__(self, dim: int, num_heads: int, n_points: int = 4, n_levels: int = 1, deform_ratio: float = 1.0,
                 with_cffn: bool = True, cffn_ratio: float = 0.25, drop_path: float = 0., with_cp: bool = False):
        super().__init__()
        self.with_cp = with_cp
        self.query_norm = StreamNorm(dim, eps=INTERACTION_NORM_EPS)
        self.feat_norm = StreamNorm(dim, eps=INTERACTION_NORM_EPS)
        self.attn = MSDeformAttn(dim, n_levels, num_heads, n_points, ratio=deform_ratio)
        self.with_cffn = with_cffn
        if with_cffn:
            self.ffn = ConvFFN(dim, int(dim * cffn_ratio))
            self.ffn_norm = StreamNorm(dim, eps=INTERACTION_NORM_EPS)
            self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, query, reference_points, feat, shapes: Shapes, level_shapes: Shapes, inplace: bool = False):
        """``inplace``: without autograd, add the two residuals into ``query`` itself (the caller's tensor,
        which it must not need any more) instead of allocating new ``[B, tokens, C]`` streams."""
        inplace = inplace and not torch.is_grad_enabled()

        def body(query, feat):
            attn = self.attn(self.query_norm(query), reference_points, self.feat_norm(feat), shapes)
            query = query.add_(attn) if inplace else query + attn
            if self.with_cffn:
                ffn = self.drop_path(self.ffn(self.ffn_norm(query), level_shapes))
                # without autograd (which keeps ``query`` for ffn_norm's backward) the stream just made is
                # updated in place
                query = query + ffn if torch.is_grad_enabled() else query.add_(ffn)
            return query
        return self.run(body, query, feat)


class InteractionBlock(nn.Module):
    """Injector, then this interaction's ViT blocks, then the extractor (and, in the last interaction,
    two extra extractors)."""

    def __init__(self, dim: int, num_heads: int, n_points: int = 4, drop_path: float = 0., with_cffn: bool = True,
                 cffn_ratio: float = 0.25, init_values: float = 0., deform_ratio: float = 1.0,
                 extra_extractor: bool = False, with_cp: bool = False):
        super().__init__()
        self.injector = Injector(dim, num_heads, n_points, n_levels=3, deform_ratio=deform_ratio,
                                 init_values=init_values, with_cp=with_cp)
        ext = dict(n_points=n_points, n_levels=1, deform_ratio=deform_ratio, with_cffn=with_cffn,
                   cffn_ratio=cffn_ratio, drop_path=drop_path, with_cp=with_cp)
        self.extractor = Extractor(dim, num_heads, **ext)
        self.extra_extractors: Optional[nn.ModuleList] = (
            nn.ModuleList([Extractor(dim, num_heads, **ext) for _ in range(2)]) if extra_extractor else None)

    def forward(self, x: torch.Tensor, c: torch.Tensor, run_blocks: Callable[[torch.Tensor], torch.Tensor],
                vit_points: torch.Tensor, c_points: torch.Tensor, grid: Tuple[int, int], level_shapes: Shapes,
                inplace: bool = False):
        """``vit_points``: reference points of the ViT tokens (queries of the injector, which samples
        the three ``level_shapes``); ``c_points``: those of ``c`` (queries of the extractors, which sample
        the ViT ``grid``). ``inplace``: without autograd the extractors may update ``c`` itself (the caller
        must not need it any more)."""
        x = self.injector(x, vit_points, c, level_shapes)
        x = run_blocks(x)
        extractors = [self.extractor, *(self.extra_extractors or ())]
        for i, extractor in enumerate(extractors):  # after the first, c is this block's own tensor
            c = extractor(c, c_points, x, [grid], level_shapes, inplace=inplace or i > 0)
        return x, c
