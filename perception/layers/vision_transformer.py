"""InternViT as a plain ``nn.Module``; the OpenMMLab backbone in ``perception.models`` wraps it.

Parameter names are exactly those of InternVL's released ``intern_vit_6b_224px.pth`` (format A):
``cls_token``, ``pos_embed``, ``patch_embed.proj.*``, ``blocks.N.{norm1,attn,ls1,norm2,mlp,ls2}``.
"""
import math
from typing import Dict, List, Sequence, Tuple, Union

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from .attention import check_attn_backend, resolve_attn_backend
from .block import Block
from .compile import check_compile_mode
from .patch_embed import PatchEmbed
from .pos_embed import interpolate_pos_embed, resample_abs_pos_embed

ARCH_KEYS = ('embed_dims', 'num_layers', 'num_heads', 'feedforward_channels', 'norm_type',
             'qk_normalization', 'qkv_bias', 'patch_size', 'img_size')
ARCH_OPTIONAL = {'layer_scale_init': 0.1, 'norm_eps': 1e-6}

_6B = dict(embed_dims=3200, num_heads=25, feedforward_channels=12800, norm_type='rms_norm',
           qk_normalization=True, qkv_bias=False, patch_size=14, layer_scale_init=0.1, norm_eps=1e-6)
ARCH_PRESETS: Dict[str, dict] = {
    '6b': dict(_6B, num_layers=48, img_size=224),
    '6b-448px-v1.5': dict(_6B, num_layers=45, img_size=448),
    '6b-448px-v2.5': dict(_6B, num_layers=45, img_size=448),
    '300m': dict(embed_dims=1024, num_layers=24, num_heads=16, feedforward_channels=4096,
                 norm_type='layer_norm', qk_normalization=False, qkv_bias=True, patch_size=14,
                 img_size=448, layer_scale_init=0.1, norm_eps=1e-6),
}
ARCH_ALIASES = {
    '6b-224px': '6b', 'internvit-6b': '6b', 'internvit-6b-224px': '6b',
    '6b-448px': '6b-448px-v1.5', '6b-448px-v1-5': '6b-448px-v1.5', '6b-448px-v2_5': '6b-448px-v2.5',
    '300m-448px': '300m', 'internvit-300m-448px': '300m',
}


def parse_arch(arch: Union[str, dict]) -> dict:
    """Full architecture dict from a preset name or a dict (validated, optional keys filled)."""
    if isinstance(arch, str):
        name = ARCH_ALIASES.get(arch.lower(), arch.lower())
        if name not in ARCH_PRESETS:
            raise ValueError(f'unknown InternViT arch {arch!r}; presets: {sorted(ARCH_PRESETS)} '
                             f'or a dict with keys {ARCH_KEYS}')
        return dict(ARCH_PRESETS[name])
    if not isinstance(arch, dict):
        raise TypeError(f'arch must be a preset name or a dict, got {type(arch).__name__}')
    missing = [k for k in ARCH_KEYS if k not in arch]
    unknown = [k for k in arch if k not in ARCH_KEYS and k not in ARCH_OPTIONAL]
    if missing or unknown:
        raise ValueError(f'arch dict: missing keys {missing}, unknown keys {unknown} '
                         f'(required {list(ARCH_KEYS)}, optional {list(ARCH_OPTIONAL)})')
    out = dict(ARCH_OPTIONAL)
    out.update(arch)
    if out['norm_type'] not in ('rms_norm', 'layer_norm'):
        raise ValueError(f"arch norm_type must be 'rms_norm' or 'layer_norm', got {out['norm_type']!r}")
    if out['embed_dims'] % out['num_heads']:
        raise ValueError(f"arch embed_dims {out['embed_dims']} not divisible by num_heads {out['num_heads']}")
    if out['img_size'] % out['patch_size']:
        raise ValueError(f"arch img_size {out['img_size']} not a multiple of patch_size {out['patch_size']}")
    return out


def _to_2tuple(v) -> Tuple[int, int]:
    return (int(v), int(v)) if isinstance(v, (int, float)) else (int(v[0]), int(v[1]))


class InternVisionTransformer(nn.Module):
    """The InternViT encoder (no final norm).

    Position embeddings keep the pretraining grid (``img_size / patch_size``) and are resampled in
    forward for other grids (bicubic, ``align_corners=False``, no antialias, float32, cached per grid
    when they are not being trained), so any input whose sides are multiples of the patch size works.
    """

    def __init__(self, arch: Union[str, dict] = '6b', drop_path_rate: float = 0., with_cp: bool = False,
                 attn_backend: str = 'auto', compile_blocks=False):
        nn.Module.__init__(self)
        self._build(arch, drop_path_rate, with_cp, attn_backend, compile_blocks)

    def _build(self, arch, drop_path_rate, with_cp, attn_backend, compile_blocks=False):
        cfg = parse_arch(arch)
        if not 0 <= float(drop_path_rate) < 1:
            raise ValueError(f'drop_path_rate must be in [0, 1), got {drop_path_rate}')
        self.arch = cfg
        self.embed_dims = C = cfg['embed_dims']
        self.num_layers = cfg['num_layers']
        self.patch_size = cfg['patch_size']
        self.pretrain_grid = _to_2tuple(cfg['img_size'] // cfg['patch_size'])
        self.with_cp = with_cp
        self._attn_backend = check_attn_backend(attn_backend)
        self.patch_embed = PatchEmbed(cfg['patch_size'], 3, C)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, C))
        self.pos_embed = nn.Parameter(torch.zeros(1, self.pretrain_grid[0] * self.pretrain_grid[1] + 1, C))
        dpr = [float(r) for r in torch.linspace(0, drop_path_rate, self.num_layers, device='cpu')]
        self.blocks = nn.ModuleList([
            Block(C, cfg['num_heads'], cfg['feedforward_channels'], norm_type=cfg['norm_type'],
                  norm_eps=cfg['norm_eps'], qkv_bias=cfg['qkv_bias'],
                  qk_normalization=cfg['qk_normalization'], layer_scale_init=cfg['layer_scale_init'],
                  drop_path=dpr[i], attn_backend=attn_backend, compile_blocks=compile_blocks)
            for i in range(self.num_layers)
        ])
        self._compile_blocks = check_compile_mode(compile_blocks)
        self._pos_cache: Dict[tuple, torch.Tensor] = {}

    # ----------------------------------------------------------------------------- init
    def reset_parameters(self):
        """The constructor's values of this module's own parameters (zero cls token and position
        embedding); submodules reset their own. For models materialised from ``meta`` with ``to_empty``."""
        nn.init.zeros_(self.cls_token)
        nn.init.zeros_(self.pos_embed)
        self._pos_cache.clear()

    def init_random_weights(self):
        """ViT-style random init: trunc-normal(0.02) linears and embeddings, zero biases."""
        def _init(m):
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        self.apply(_init)
        nn.init.trunc_normal_(self.pos_embed, std=.02)
        nn.init.trunc_normal_(self.cls_token, std=.02)
        w = self.patch_embed.proj.weight
        nn.init.uniform_(w, -1 / math.sqrt(w[0].numel()), 1 / math.sqrt(w[0].numel()))
        self._pos_cache.clear()

    # ----------------------------------------------------------------------------- attention
    @property
    def attn_backend(self) -> str:
        """The requested backend ('auto', 'xformers', 'sdpa' or 'math')."""
        return self._attn_backend

    def set_attn_backend(self, attn_backend: str):
        check_attn_backend(attn_backend)
        self._attn_backend = attn_backend
        for blk in self.blocks:
            blk.attn.attn_backend = attn_backend

    def resolved_attn_backend(self, device=None) -> str:
        """The kernel that runs on ``device`` (default: where the parameters are)."""
        if device is None:
            device = self.cls_token.device
        return resolve_attn_backend(self._attn_backend, device)

    # ----------------------------------------------------------------------------- compilation
    @property
    def compile_blocks(self):
        """False, True or 'force': whether the blocks run one shared compiled body (:mod:`.compile`)."""
        return self._compile_blocks

    def set_compile_blocks(self, mode):
        self._compile_blocks = check_compile_mode(mode)
        for blk in self.blocks:
            blk.compile_blocks = self._compile_blocks

    # ----------------------------------------------------------------------------- forward
    def pos_embed_for(self, grid: Tuple[int, int]) -> torch.Tensor:
        """Position embedding for a ``grid`` of patches: ``[1, 1 + h*w, C]``.

        Eager: the pretraining grid's own embedding, else :func:`resample_abs_pos_embed` (memoised
        per grid for inference). While traced (``torch.export`` / ``torch.compile``, where the grid
        may be symbolic) the same interpolation runs unconditionally: at the pretraining grid it is
        the exact identity, so both give the same numbers.
        """
        if torch.compiler.is_compiling() or torch.compiler.is_exporting():
            return interpolate_pos_embed(self.pos_embed, grid, self.pretrain_grid)
        if tuple(grid) == self.pretrain_grid:
            return self.pos_embed
        pe = self.pos_embed
        trainable = pe.requires_grad and torch.is_grad_enabled()
        if trainable:
            return resample_abs_pos_embed(pe, grid, self.pretrain_grid)
        key = (tuple(grid), pe.device, pe.dtype, pe.data_ptr(), pe._version)
        out = self._pos_cache.get(key)
        if out is None:
            with torch.no_grad():
                out = resample_abs_pos_embed(pe, grid, self.pretrain_grid)
            if len(self._pos_cache) >= 8:
                self._pos_cache.clear()
            self._pos_cache[key] = out
        return out

    def prepare_tokens(self, x: torch.Tensor) -> Tuple[torch.Tensor, Tuple[int, int]]:
        tokens, grid = self.patch_embed(x)
        # The residual stream keeps the parameters' dtype: float32 under autocast (the conv's bf16
        # output is widened), bf16 for a model cast to bf16.
        dtype = self.pos_embed.dtype
        cls = self.cls_token.expand(tokens.shape[0], -1, -1).to(dtype)
        tokens = torch.cat([cls, tokens.to(dtype)], dim=1)
        return tokens + self.pos_embed_for(grid).to(dtype), grid

    def _run_block(self, blk: nn.Module, x: torch.Tensor) -> torch.Tensor:
        if self.with_cp and self.training and torch.is_grad_enabled():
            return checkpoint(blk, x, use_reentrant=False)
        return blk(x)

    def normalize_indices(self, indices: Union[int, Sequence[int]]) -> List[int]:
        if isinstance(indices, int):
            indices = [indices]
        out = []
        for i in indices:
            j = int(i) + self.num_layers if int(i) < 0 else int(i)
            if not 0 <= j < self.num_layers:
                raise ValueError(f'layer index {i} out of range for {self.num_layers} layers')
            out.append(j)
        return out

    def forward_layers(self, x: torch.Tensor, indices: Sequence[int]):
        """Run the blocks up to the deepest of ``indices`` (0-based block numbers).

        Returns (dict block index -> tokens [B, 1 + h*w, C], grid).
        """
        wanted = set(indices)
        last = max(wanted)
        x, grid = self.prepare_tokens(x)
        outs = {}
        for i, blk in enumerate(self.blocks[:last + 1]):
            x = self._run_block(blk, x)
            if i in wanted:
                outs[i] = x
        return outs, grid

    def get_intermediate_layers(self, x: torch.Tensor, n: Union[int, Sequence[int]] = 1,
                                reshape: bool = False, return_class_token: bool = False):
        """dinov2-style features: ``n`` last blocks (int) or the listed block indices.

        Returns a tuple of patch tokens ``[B, h*w, C]`` (``[B, C, h, w]`` with ``reshape``), or of
        ``(patch_tokens, cls_token [B, C])`` pairs with ``return_class_token``.
        """
        if isinstance(n, int):
            if not 1 <= n <= self.num_layers:
                raise ValueError(f'n={n} must be within 1..{self.num_layers}')
            idx = list(range(self.num_layers - n, self.num_layers))
        else:
            idx = self.normalize_indices(n)
        outs, (h, w) = self.forward_layers(x, idx)
        res = []
        for i in idx:
            t = outs[i]
            patches = t[:, 1:]
            if reshape:
                patches = patches.reshape(t.shape[0], h, w, -1).permute(0, 3, 1, 2).contiguous()
            res.append((patches, t[:, 0]) if return_class_token else patches)
        return tuple(res)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Final-block tokens ``[B, 1 + h*w, C]`` (cls first), as the HF model's last hidden state."""
        outs, _ = self.forward_layers(x, [self.num_layers - 1])
        return outs[self.num_layers - 1]
