"""InternViT + ViT-Adapter as an OpenMMLab backbone: InternVL-MMDetSeg's ``InternViTAdapter``
(``mmsegmentation/mmseg/models/backbones/vit_adapter.py``), in fp32, with the fork's parameter names.

The ViT is this project's :class:`~perception.layers.vision_transformer.InternVisionTransformer` (its
patch embedding, position-embedding resampling, blocks, ``with_cp`` and ``attn_backend``), run without
its class token; the adapter's parts are in :mod:`.adapter_modules`, the deformable attention in
:mod:`perception.layers.deform_attn`, loading in :mod:`.adapter_loading`.
"""
import contextlib
import functools
import math
from typing import List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from mmengine.model import BaseModule
from torch import nn

from ..common.errors import UnavailableError
from ..layers.attention import BackendUnavailableError, resolve_attn_backend
from ..layers.autocast import compute_dtype
from ..layers.deform_attn import MSDeformAttn, grid_reference_points
from ..layers.norm import LayerNorm2d
from ..layers.pos_embed import resample_abs_pos_embed
from ..layers.vision_transformer import InternVisionTransformer, parse_arch
from ..registry import register
from .adapter_modules import MAP_NORM_EPS, InteractionBlock, SpatialPriorModule
from .internvit import build_in_dtype, low_precision_dtype

#: the ViT grid must be the spatial prior module's stride-16 map
ADAPTER_PATCH = 16
#: c2, c3, c4 (strides 8, 16, 32) are 2x, 1x and 0.5x the ViT grid only for sides that are multiples of 32
SIZE_DIVISOR = 32


def adapter_arch(arch: Union[str, dict], patch_size: Optional[int] = None, img_size: Optional[int] = None) -> dict:
    """The ViT's arch dict: ``patch_size`` replaces the arch's (the pretraining grid is kept unless
    ``img_size`` sets it: ``img_size / patch_size`` cells a side); the adapter needs patch 16."""
    cfg = parse_arch(arch)
    if patch_size is not None and int(patch_size) != cfg['patch_size']:
        grid = cfg['img_size'] // cfg['patch_size']
        cfg.update(patch_size=int(patch_size), img_size=grid * int(patch_size))
    if img_size is not None:
        cfg['img_size'] = int(img_size)
    if cfg['patch_size'] != ADAPTER_PATCH:
        raise ValueError(f"InternViTAdapter needs patch_size={ADAPTER_PATCH} (the ViT grid must be the spatial prior "
                         f"module's stride-16 map), the arch has {cfg['patch_size']}: pass patch_size={ADAPTER_PATCH} "
                         f"(a {cfg['patch_size']}x{cfg['patch_size']} checkpoint kernel is then resampled at load, "
                         'bicubic as the fork does, and announced)')
    return parse_arch(cfg)


def check_interaction_indexes(indexes, depth: int) -> List[Tuple[int, int]]:
    """``[[first, last], ...]`` block ranges that cover ``0 .. depth-1`` in order, without gap or overlap."""
    if indexes is None:  # four equal groups: [[0, 11], [12, 23], [24, 35], [36, 47]] for the 6B
        if depth < 4:
            raise ValueError(f'interaction_indexes: a {depth}-block ViT cannot be split into the default 4 '
                             'interactions: pass interaction_indexes')
        bounds = [round(i * depth / 4) for i in range(5)]
        return [(bounds[i], bounds[i + 1] - 1) for i in range(4)]
    try:
        pairs = [(int(a), int(b)) for a, b in indexes]
    except (TypeError, ValueError):
        raise ValueError(f'interaction_indexes must be a list of [first, last] block pairs, got {indexes!r}') from None
    if not pairs:
        raise ValueError('interaction_indexes is empty')
    expected = 0
    for first, last in pairs:
        if last < first:
            raise ValueError(f'interaction_indexes {indexes!r}: [{first}, {last}] ends before it starts')
        if first < expected:
            raise ValueError(f'interaction_indexes {indexes!r}: [{first}, {last}] overlaps the previous interaction '
                             f'(block {first} would run twice; the next range must start at {expected})')
        if first > expected:
            raise ValueError(f'interaction_indexes {indexes!r}: blocks {expected}..{first - 1} are in no interaction '
                             f'(a gap before [{first}, {last}])')
        if last >= depth:
            raise ValueError(f'interaction_indexes {indexes!r}: block {last} exceeds the depth ({depth} blocks, '
                             f'0..{depth - 1})')
        expected = last + 1
    if expected != depth:
        raise ValueError(f'interaction_indexes {indexes!r}: the last interaction ends at block {expected - 1} but the '
                         f'ViT has {depth} blocks (must end at {depth - 1})')
    return pairs


def check_input_size(h: int, w: int):
    """Refuse sides the spatial prior module cannot align with the ViT grid, naming the nearest valid sizes."""
    if h % SIZE_DIVISOR == 0 and w % SIZE_DIVISOR == 0 and h > 0 and w > 0:
        return
    d = SIZE_DIVISOR
    up = f'{math.ceil(h / d) * d}x{math.ceil(w / d) * d}'
    down = f'{h // d * d}x{w // d * d}' if h >= d and w >= d else None
    near = f'{down} or {up}' if down and down != up else up
    raise ValueError(f'InternViTAdapter: input size {h}x{w} is not a multiple of {d} (the strides 8/16/32 of the '
                     f'spatial prior module must give 2x, 1x and 0.5x the {ADAPTER_PATCH}-pixel ViT grid); nearest '
                     f'valid sizes: {near}. In mmseg set the data preprocessor\'s size_divisor={d} (it pads) or crop / '
                     f'resize to multiples of {d}')


@register('MODELS', 'mmseg', 'mmpretrain')
class InternViTAdapter(InternVisionTransformer, BaseModule):
    """InternViT with ViT-Adapter: four maps at strides 4, 8, 16, 32, each ``embed_dims`` channels.

    Input sides must be multiples of :attr:`size_divisor` (32); the project's padding rule
    (:mod:`perception.segmentation.padding`) pads to it at test time.

    Args:
        arch: as :class:`~perception.models.InternViT` (preset name or dict).
        patch_size: replaces the arch's patch size; the adapter needs 16 (the InternViT presets have 14:
            pass 16, and a 14x14 checkpoint kernel is resampled at load, announced).
        img_size: the position-embedding grid ``img_size / 16`` (default: the arch's pretraining grid,
            16x16 for the 224px 6B). The fork's recipe keeps 32x32 (``img_size=512``): set it to load its
            checkpoints without resampling. Any input whose sides are multiples of 32 works either way.
        interaction_indexes: ``[[first, last], ...]`` blocks of each interaction, covering every block once
            (default: four equal groups, the fork's ``[[0, 11], [12, 23], [24, 35], [36, 47]]`` for 48 blocks).
        conv_inplane, n_points, deform_ratio, with_cffn, cffn_ratio, add_vit_feature, use_extra_extractor,
        use_final_norm: as the fork (defaults are its class defaults; its ADE20K recipe sets
            ``deform_ratio=0.25``).
        deform_num_heads: heads of the deformable attention (default: the ViT's, 25 for the 6B as in the fork);
            must divide ``int(embed_dims * deform_ratio)``.
        init_values: initial injector gamma (the fork's ``init_values``, 0 in its recipe); the ViT's LayerScale
            init comes from the arch.
        freeze_vit: patch embedding, position embedding and blocks get no gradient and stay in eval mode
            (gradients still flow through the blocks to the adapter). The fork freezes them always.
        drop_path_rate: the ViT's stochastic depth (linear up to this rate) and the extractors' ConvFFN
            drop path (this rate), as the fork.
        with_cp, attn_backend, compile_blocks, init_cfg: as :class:`~perception.models.InternViT`;
            ``with_cp`` also checkpoints the injectors and extractors. ``init_cfg`` Pretrained reads an
            InternViT release (into the ViT; the adapter keeps its init) or a whole adapter's weights
            (e.g. a fork segmentor with ``prefix='backbone.'``), strictly.
        weights_dtype: None (fp32) or 'bf16' / 'fp16' with ``freeze_vit=True``: the ViT's weights (patch
            embedding, position embedding, blocks) are built and held in that dtype only (no fp32 copy, as
            :class:`~perception.models.InternViT` does it); the adapter's stay fp32. The blocks compute in that
            dtype, the adapter in fp32 (tokens are cast at each block), and gradients still flow through the
            blocks to the injectors. The 6B's ViT then holds 11.8 GB instead of 23.6 GB. For one GPU.
    """

    def __init__(self, arch: Union[str, dict] = '6b', patch_size: Optional[int] = None,
                 img_size: Optional[int] = None, interaction_indexes: Optional[Sequence[Sequence[int]]] = None,
                 conv_inplane: int = 64, n_points: int = 4, deform_num_heads: Optional[int] = None,
                 deform_ratio: float = 0.5, with_cffn: bool = True, cffn_ratio: float = 0.25,
                 init_values: float = 0., add_vit_feature: bool = True, use_extra_extractor: bool = True,
                 use_final_norm: bool = True, freeze_vit: bool = True, drop_path_rate: float = 0.,
                 with_cp: bool = False, attn_backend: str = 'auto', compile_blocks=False,
                 init_cfg: Optional[dict] = None, weights_dtype: Optional[str] = None):
        BaseModule.__init__(self, init_cfg=init_cfg)
        self.size_divisor = SIZE_DIVISOR
        cfg = adapter_arch(arch, patch_size, img_size)
        self.patch_size_asked = patch_size is not None  # a checkpoint kernel of another size may be resampled
        # the ViT alone exists yet: in weights_dtype it is built without an fp32 copy; the adapter below is fp32
        self.weights_dtype = low_precision_dtype(weights_dtype, freeze_vit, 'freeze_vit')
        build_in_dtype(self, self.weights_dtype,
                       lambda: self._build(cfg, drop_path_rate, with_cp, attn_backend, compile_blocks))
        self.cls_token = None  # the adapter runs the ViT without its class token (the fork's cls_token = None)
        C = self.embed_dims
        self.interaction_indexes = check_interaction_indexes(interaction_indexes, self.num_layers)
        heads = cfg['num_heads'] if deform_num_heads is None else int(deform_num_heads)
        if heads < 1 or int(C * deform_ratio) < 1 or int(C * deform_ratio) % heads:
            raise ValueError(f'deform_num_heads={heads} does not divide the deformable attention value width '
                             f'{int(C * deform_ratio)} (= int({C} x deform_ratio {deform_ratio}))')
        if with_cffn and int(C * cffn_ratio) < 1:
            raise ValueError(f'cffn_ratio={cffn_ratio} leaves the ConvFFN no hidden channel at width {C}')
        self.add_vit_feature = add_vit_feature
        self.use_final_norm = use_final_norm
        self.freeze_vit = freeze_vit
        self.level_embed = nn.Parameter(torch.zeros(3, C))
        self.spm = SpatialPriorModule(conv_inplane, C)
        last = len(self.interaction_indexes) - 1
        self.interactions = nn.ModuleList([
            InteractionBlock(C, heads, n_points, drop_path=float(drop_path_rate), with_cffn=with_cffn,
                             cffn_ratio=cffn_ratio, init_values=init_values, deform_ratio=deform_ratio,
                             extra_extractor=use_extra_extractor and i == last, with_cp=with_cp)
            for i in range(len(self.interaction_indexes))])
        self.up = nn.ConvTranspose2d(C, C, 2, 2)
        if use_final_norm:
            for i in range(1, 5):
                setattr(self, f'norm{i}', LayerNorm2d(C, eps=MAP_NORM_EPS))
        self.init_adapter_weights()
        if freeze_vit:
            self.freeze_vit_part()

    # ----------------------------------------------------------------------------- parameters
    def vit_parameters(self):
        """(name, parameter) of the ViT part: patch embedding, position embedding, blocks."""
        for name, p in self.named_parameters():
            if name == 'pos_embed' or name.startswith(('patch_embed.', 'blocks.')):
                yield name, p

    def freeze_vit_part(self):
        self.freeze_vit = True
        for _, p in self.vit_parameters():
            p.requires_grad_(False)
        self.patch_embed.eval()
        self.blocks.eval()

    def train(self, mode: bool = True):
        super().train(mode)
        if self.freeze_vit:
            self.patch_embed.eval()
            self.blocks.eval()
        return self

    def init_adapter_weights(self):
        """The fork's init of the adapter: trunc-normal(0.02) linears with zero bias, LayerNorms 1 / 0,
        convs normal(0, sqrt(2 / fan_out)) with zero bias, Deformable DETR's init of every deformable
        attention, a standard-normal ``level_embed``, injector gamma at ``init_values``."""
        def init(m):
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
                fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels // m.groups
                nn.init.normal_(m.weight, 0, math.sqrt(2.0 / fan_out))
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        for part in (self.spm, self.interactions, self.up):
            part.apply(init)
        for m in self.modules():
            if isinstance(m, MSDeformAttn):
                m.reset_parameters()
        nn.init.normal_(self.level_embed)
        for blk in self.interactions:
            nn.init.constant_(blk.injector.gamma, blk.injector.init_values)
        if self.use_final_norm:
            for i in range(1, 5):
                getattr(self, f'norm{i}').reset_parameters()

    def init_random_weights(self):
        """Random ViT (as :meth:`InternVisionTransformer.init_random_weights`, no class token) and the
        fork's adapter init."""
        for blk in self.blocks:
            for m in blk.modules():
                if isinstance(m, nn.Linear):
                    nn.init.trunc_normal_(m.weight, std=.02)
                    if m.bias is not None:
                        nn.init.zeros_(m.bias)
        nn.init.trunc_normal_(self.pos_embed, std=.02)
        w = self.patch_embed.proj.weight
        nn.init.uniform_(w, -1 / math.sqrt(w[0].numel()), 1 / math.sqrt(w[0].numel()))
        self._pos_cache.clear()
        self.init_adapter_weights()

    def reset_parameters(self):
        nn.init.zeros_(self.pos_embed)
        self._pos_cache.clear()

    def init_weights(self):
        if self.init_cfg is not None and self.init_cfg.get('type') == 'Pretrained':
            from .adapter_loading import load_adapter_pretrained  # lazily: loaders pull safetensors etc.
            load_adapter_pretrained(self, self.init_cfg['checkpoint'], prefix=self.init_cfg.get('prefix'))
        elif self.init_cfg is None:
            self.init_random_weights()
        else:
            super().init_weights()
        self._is_init = True
        if self.freeze_vit:
            self.freeze_vit_part()

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                              error_msgs):
        """A ``pos_embed`` of another grid (the fork's checkpoints keep 32x32) is resampled to this model's."""
        key = prefix + 'pos_embed'
        pe = state_dict.get(key)
        if pe is not None and pe.ndim == 3 and pe.shape != self.pos_embed.shape and pe.shape[-1] == self.embed_dims:
            state_dict[key] = resample_abs_pos_embed(pe, self.pretrain_grid).to(pe.dtype)
        self._pos_cache.clear()
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                                      error_msgs)

    # ----------------------------------------------------------------------------- forward
    def resolved_attn_backend(self, device=None) -> str:
        try:
            return resolve_attn_backend(self.attn_backend, self.pos_embed.device if device is None else device)
        except BackendUnavailableError as e:
            raise UnavailableError(str(e)) from e

    def prepare_tokens(self, x: torch.Tensor) -> Tuple[torch.Tensor, Tuple[int, int]]:
        """Patch tokens plus the position embedding without its class entry (no class token), computed in the
        ViT's dtype and returned in the adapter's (``level_embed``'s: fp32 unless the whole model was cast)."""
        with torch.no_grad() if self.freeze_vit else contextlib.nullcontext():
            dtype = self.pos_embed.dtype  # the ViT's (export.lowmem.fp32_compute widens it with the module)
            tokens, grid = self.patch_embed(x.to(dtype))
            # row-major tokens: the patch embedding's are a transposed view of its conv map, and without the
            # class token's concatenation that layout would run through every block (and every matmul's input
            # would be copied first)
            tokens = tokens.to(dtype).contiguous() + self.pos_embed_for(grid)[:, 1:].to(dtype)
            return tokens.to(self.level_embed.dtype), grid

    def get_intermediate_layers(self, *args, **kwargs):
        raise TypeError('InternViTAdapter has no class token and no per-block outputs: forward() returns its '
                        'four maps')

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        """``[B, 3, H, W]`` (H, W multiples of 32) -> four maps ``[B, C, H/s, W/s]``, s = 4, 8, 16, 32, in the
        adapter's dtype (fp32; fp16 for a model cast to fp16, as the fp16 export does), in
        ``torch.channels_last`` memory format (the adapter's token layout; convolutions take it as it is, and a
        transpose of the 3200-channel stride-4 map costs more than the adapter's deformable attention)."""
        try:
            return self.forward_adapter(x)
        except BackendUnavailableError as e:  # a kernel / compiler this machine lacks: one line from the tools
            raise UnavailableError(str(e)) from e

    def forward_adapter(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f'InternViTAdapter expects an image batch [B, 3, H, W], got shape {tuple(x.shape)}')
        h, w = x.shape[-2], x.shape[-1]  # no int(): torch.export keeps them symbolic (multiples of 32) through here
        check_input_size(h, w)
        H, W = h // ADAPTER_PATCH, w // ADAPTER_PATCH
        levels = [(2 * H, 2 * W), (H, W), (H // 2, W // 2)]
        vit_points = grid_reference_points([(H, W)], x.device)
        c_points = grid_reference_points(levels, x.device)

        c1, c2, c3, c4 = self.spm(x)
        c = torch.cat([c2 + self.level_embed[0], c3 + self.level_embed[1], c4 + self.level_embed[2]], dim=1)
        t, grid = self.prepare_tokens(x)
        for (first, last), layer in zip(self.interaction_indexes, self.interactions):
            t, c = layer(t, c, functools.partial(self._run_blocks, first, last), vit_points, c_points, grid, levels,
                         inplace=True)  # c is this forward's own (made by the cat above)

        # channels last from here on: the maps are the token sequences viewed as [B, h, w, C], never transposed
        B, _, C = t.shape
        c2, c3, c4 = (p.view(B, hh, ww, C) for p, (hh, ww) in zip(c.split([a * b for a, b in levels], dim=1), levels))
        outs = [self.up_add(c2, c1), c2, c3, c4]
        if self.add_vit_feature:
            x3 = t.view(B, H, W, C).permute(0, 3, 1, 2)  # [B, C, H, W] in channels_last memory format
            vit = [F.interpolate(x3, scale_factor=s, mode='bilinear', align_corners=False) for s in (4, 2)]
            vit += [x3, F.interpolate(x3, scale_factor=0.5, mode='bilinear', align_corners=False)]
            # the two interpolated maps are fresh (and interpolation's backward does not read its output):
            # the sums go into them rather than into two more maps of 100-200 MB
            outs = [v.permute(0, 2, 3, 1).add_(o) if i < 2 else o + v.permute(0, 2, 3, 1)
                    for i, (o, v) in enumerate(zip(outs, vit))]
        dtype = self.level_embed.dtype  # the adapter's: fp32, or fp16 in an fp16 export (its heads are fp16 too)
        outs = [o.permute(0, 3, 1, 2).to(dtype) for o in outs]  # [B, C, h, w], channels_last memory format
        if self.use_final_norm:
            outs = [getattr(self, f'norm{i + 1}')(o) for i, o in enumerate(outs)]
        return tuple(outs)

    def _run_blocks(self, first: int, last: int, t: torch.Tensor) -> torch.Tensor:
        """Blocks ``first..last`` in the ViT's dtype, the tokens cast once each way (not at every block: the
        round trip changes no value, but costs two copies of the tokens per block)."""
        x = t.to(self.pos_embed.dtype)
        for blk in self.blocks[first:last + 1]:
            x = self._run_block(blk, x)
        return x.to(t.dtype)

    def up_add(self, c2: torch.Tensor, c1: torch.Tensor) -> torch.Tensor:
        """``c1 + self.up(c2)``, added into ``c1``, on channels-last maps (``c2`` ``[B, h, w, C]``, ``c1`` ``[B, 2h, 2w, C]``), ``up`` being
        the fork's ConvTranspose2d (kernel 2, stride 2). With kernel = stride each input cell makes its own 2x2
        output cells, so the transposed conv is one matmul ``[B*h*w, C] x [C, C*2*2]`` on the weight as stored
        (columns: channel, row, column) whose result is added to ``c1`` through a strided view: the same values
        at matmul speed, with no channels-first map and no copy of the weight or of the result."""
        B, h, w, C = c2.shape
        dt = compute_dtype(c2)
        y = torch.matmul(c2.to(dt), self.up.weight.to(dt).flatten(1))  # [B, h, w, C * 2 * 2]
        y = y.view(B, h, w, -1, 2, 2).permute(0, 1, 4, 2, 5, 3)  # [B, h, 2, w, 2, C]
        out = c1.view(B, h, 2, w, 2, -1).add_(y)  # c1 is the spatial prior module's fresh output
        return out.add_(self.up.bias.to(out.dtype)).view(B, 2 * h, 2 * w, -1)
