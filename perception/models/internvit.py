"""InternViT as an OpenMMLab backbone (mmsegmentation 1.x and mmpretrain ``MODELS``)."""
import contextlib
from typing import Callable, Optional, Sequence, Union

import torch
from mmengine.logging import print_log
from mmengine.model import BaseModule

from ..common.dtypes import LOW_PRECISION, torch_dtype
from ..common.errors import UnavailableError
from ..layers.attention import BackendUnavailableError
from ..layers.vision_transformer import InternVisionTransformer
from ..registry import register


def low_precision_dtype(weights_dtype: Optional[str], frozen: bool, flag: str):
    """``weights_dtype`` (None, 'bf16', 'fp16') as a torch dtype, refused in one line unless the weights are
    frozen (``flag``: the argument that freezes them): trained weights stay fp32 (autocast trains them)."""
    if weights_dtype is not None and weights_dtype not in LOW_PRECISION:
        raise ValueError(f"weights_dtype must be None, 'bf16' or 'fp16', got {weights_dtype!r}")
    if weights_dtype and not frozen:
        raise ValueError(f'weights_dtype={weights_dtype!r} needs {flag}=True: trained weights stay fp32 (mixed '
                         'precision trains them through autocast)')
    return weights_dtype and torch_dtype(weights_dtype)


def build_in_dtype(module: torch.nn.Module, dtype: Optional[torch.dtype], build: Callable[[], None]):
    """Run ``build()`` (it creates ``module``'s parameters) so that they exist in ``dtype`` only, never as an fp32
    copy: built on the ``meta`` device, allocated in ``dtype`` on the CPU (left on ``meta`` when the caller builds
    under ``torch.device('meta')``), reset to their constructors' values (``init_weights`` fills them).
    ``dtype=None``: a plain build."""
    if dtype is None:
        build()
        return
    on_meta = torch.empty(0).device.type == 'meta'
    with torch.device('meta'):
        build()
    module.to(dtype)
    if not on_meta:
        module.to_empty(device='cpu')
    with torch.no_grad():
        for m in module.modules():
            if hasattr(m, 'reset_parameters'):
                m.reset_parameters()


@register('MODELS', 'mmseg', 'mmpretrain')
class InternViT(InternVisionTransformer, BaseModule):
    """InternViT-6B / 300M backbone.

    Args:
        arch: preset name ('6b', '6b-448px-v1.5', '6b-448px-v2.5', '300m') or a dict with the keys
            ``embed_dims, num_layers, num_heads, feedforward_channels, norm_type, qk_normalization,
            qkv_bias, patch_size, img_size`` and optional ``layer_scale_init`` (0.1), ``norm_eps`` (1e-6).
        out_indices: blocks whose outputs are returned (0-based; negative counts from the end).
        attn_backend: 'auto' | 'xformers' | 'sdpa' | 'math' ('auto' honours ``$PERCEPTION_ATTN``).
        drop_path_rate: stochastic depth of the last block (linear from 0).
        with_cp: activation checkpointing per block while training.
        frozen: no trainable parameters, forward without autograd, always in eval mode.
        weights_dtype: None (fp32 parameters) or 'bf16' / 'fp16' with ``frozen=True``: the weights are
            built and held in that dtype only (no fp32 copy at any point: built on the meta device,
            allocated in the dtype, filled by ``init_weights``), the input is cast to it and the
            outputs are returned in fp32. The 6B then holds 11.8 GB instead of 23.6 GB; the released
            weights are bf16, so 'bf16' holds them exactly. For a frozen backbone on one GPU.
        output_cls_token: each output is ``[feature_map, cls_token]`` instead of the map alone.
        init_cfg: ``dict(type='Pretrained', checkpoint=PATH)`` loads any released InternViT file.
        img_size: overrides the arch's pretraining size, i.e. the grid ``pos_embed`` is kept at (a
            checkpoint at another grid is resampled once at load). InternVL's tuned segmentors train a
            36x36 grid: ``img_size=504``.
        compile_blocks: False (eager), True (``torch.compile`` one block body that all blocks share;
            where the platform cannot compile, one warning and the eager path) or 'force' (compile
            or raise). Works with autocast, ``frozen``, ``with_cp``, drop path and FSDP units.

    ``forward(x)`` returns a tuple of ``[B, C, H/p, W/p]`` maps, one per ``out_indices`` entry.
    """

    def __init__(self, arch: Union[str, dict] = '6b', out_indices: Union[int, Sequence[int]] = (-1,),
                 attn_backend: str = 'auto', drop_path_rate: float = 0., with_cp: bool = False,
                 frozen: bool = False, output_cls_token: bool = False, init_cfg: Optional[dict] = None,
                 img_size: Optional[int] = None, compile_blocks=False, weights_dtype: Optional[str] = None):
        BaseModule.__init__(self, init_cfg=init_cfg)
        if img_size is not None:  # the position-embedding grid, e.g. 504 for InternVL's tuned segmentors
            from ..layers.vision_transformer import parse_arch
            arch = dict(parse_arch(arch), img_size=int(img_size))
        self.weights_dtype = low_precision_dtype(weights_dtype, frozen, 'frozen')
        build_in_dtype(self, self.weights_dtype,
                       lambda: self._build(arch, drop_path_rate, with_cp, attn_backend, compile_blocks))
        self.out_indices = tuple(self.normalize_indices(out_indices))
        if not self.out_indices:
            raise ValueError('out_indices is empty')
        self.output_cls_token = output_cls_token
        self.frozen = frozen
        if frozen:
            self.freeze()

    def freeze(self):
        self.frozen = True
        for p in self.parameters():
            p.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True):
        super().train(mode and not self.frozen)
        return self

    def init_weights(self):
        if self.init_cfg is not None and self.init_cfg.get('type') == 'Pretrained':
            from ..checkpoint import load_pretrained_into  # imported lazily: loaders pull safetensors etc.
            load_pretrained_into(self, self.init_cfg['checkpoint'],
                                 prefix=self.init_cfg.get('prefix'))
            self._is_init = True
        elif self.init_cfg is None:
            if not any(p.is_meta for p in self.parameters()):
                self.init_random_weights()
            self._is_init = True
        else:
            super().init_weights()
        if self.frozen:
            self.freeze()

    def forward(self, x: torch.Tensor):
        try:
            return self._forward_maybe_frozen(x)
        except BackendUnavailableError as e:  # a kernel / compiler this machine lacks: one line from the tools
            raise UnavailableError(str(e)) from e

    def _forward_maybe_frozen(self, x: torch.Tensor):
        if self.frozen:
            with torch.no_grad():
                if self.weights_dtype is not None:  # low-precision weights: compute in them, return fp32
                    # (the dtype the weights have now: export.lowmem.fp32_compute widens them per module)
                    out = self._forward(x.to(self.cls_token.dtype))
                    return tuple([t.float() for t in o] if isinstance(o, list) else o.float() for o in out)
                return self._forward(x)
        return self._forward(x)

    def _forward(self, x: torch.Tensor):
        outs, (h, w) = self.forward_layers(x, self.out_indices)
        res = []
        for i in self.out_indices:
            t = outs[i]
            fmap = t[:, 1:].reshape(t.shape[0], h, w, -1).permute(0, 3, 1, 2).contiguous()
            res.append([fmap, t[:, 0]] if self.output_cls_token else fmap)
        return tuple(res)

    def get_intermediate_layers(self, x, n=1, reshape=False, return_class_token=False):
        try:
            with torch.no_grad() if self.frozen else contextlib.nullcontext():
                return super().get_intermediate_layers(x, n, reshape, return_class_token)
        except BackendUnavailableError as e:
            raise UnavailableError(str(e)) from e

    def resolved_attn_backend(self, device=None) -> str:
        try:
            return super().resolved_attn_backend(device)
        except BackendUnavailableError as e:
            raise UnavailableError(str(e)) from e

    def log_backend(self, device=None):
        print_log(f'InternViT: {self.num_layers} layers x {self.embed_dims}, attention backend '
                  f'{self.resolved_attn_backend(device)!r} (requested {self.attn_backend!r})',
                  logger='current')
