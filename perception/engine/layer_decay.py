"""Layer-wise learning-rate decay for InternViT segmentors (mmengine optimizer-wrapper constructor).

mmseg's own ``LayerDecayOptimizerConstructor`` knows BEiT/ConvNeXt/MAE parameter names only. The
InternVL rule, as published and as executed:

* layer id 0 for ``backbone.cls_token``, ``backbone.pos_embed`` and ``backbone.patch_embed.*``;
  id ``i + 1`` for ``backbone.blocks.i.*``; ``num_layers + 1`` for everything else (pyramid, heads, and
  ``InternViTAdapter``'s ``spm``, ``interactions``, ``level_embed``, ``up``, ``norm1..4``: InternVL-MMDetSeg's
  ``CustomLayerDecayOptimizerConstructor`` gives them its ``num_max_layer - 1``, the same id);
* lr scale ``decay_rate ** (num_layers + 1 - id)`` (48 layers, 0.95: embeddings 0.95^49 = 0.081,
  block 47 0.95, heads 1.0);
* weight decay 0 for 1-D parameters and biases. The reference meant to exempt ``pos_embed`` and
  ``cls_token`` too but compared bare names with prefixed ones, so as executed they keep the weight
  decay: ``exempt_pos_embed_cls_token=False`` (default) reproduces that, ``True`` the intent.

Parameter names may carry wrapper prefixes (``module.``, FSDP's ``_fsdp_wrapped_module.``,
checkpoint wrappers); they are stripped before matching, so the rule survives DDP/FSDP wrapping.
"""
import difflib
import re
from typing import List, Optional

import torch.nn as nn
from mmengine.logging import print_log
from mmengine.optim import DefaultOptimWrapperConstructor
from ..registry import register

_WRAPPERS = re.compile(r'(^|\.)(module|_fsdp_wrapped_module|_checkpoint_wrapped_module|_orig_mod)(?=\.)')


def clean_param_name(name: str) -> str:
    """Strip DDP / FSDP / checkpoint-wrapper / torch.compile prefixes from a parameter name."""
    out = _WRAPPERS.sub('', name)
    return out.lstrip('.')


def layer_id_for(name: str, num_layers: int) -> int:
    name = clean_param_name(name)
    if name in ('backbone.cls_token', 'backbone.pos_embed', 'backbone.mask_token') \
            or name.startswith('backbone.patch_embed.'):
        return 0
    m = re.match(r'^backbone\.blocks\.(\d+)\.', name)
    if m:
        return int(m.group(1)) + 1
    return num_layers + 1


def no_weight_decay(name: str, param, exempt_pos_embed_cls_token: bool = False) -> bool:
    name = clean_param_name(name)
    if param.ndim == 1 or name.endswith('.bias'):
        return True
    if exempt_pos_embed_cls_token and name in ('backbone.pos_embed', 'backbone.cls_token'):
        return True
    return False


@register('OPTIM_WRAPPER_CONSTRUCTORS')
class InternViTLayerDecayOptimWrapperConstructor(DefaultOptimWrapperConstructor):
    """``paramwise_cfg``: ``layer_decay_rate`` (e.g. 0.95), optional ``num_layers`` (default: the
    backbone's), ``exempt_pos_embed_cls_token`` (default False, as the reference executed). Any other
    key (mmengine's ``custom_keys``, ``norm_decay_mult``, ... or a typo) would be ignored here, so it is
    refused, as is a ``num_layers`` that is not the backbone's depth."""

    KEYS = ('layer_decay_rate', 'num_layers', 'exempt_pos_embed_cls_token')

    def __init__(self, optim_wrapper_cfg: dict, paramwise_cfg: Optional[dict] = None):
        unknown = sorted(set(paramwise_cfg or {}) - set(self.KEYS))
        if unknown:
            hints = [f'{k!r} (did you mean {m[0]!r}?)' if (m := difflib.get_close_matches(k, self.KEYS, 1)) else repr(k)
                     for k in unknown]
            raise ValueError(f'optim_wrapper.paramwise_cfg: unknown key(s) {", ".join(hints)} for '
                             f'{type(self).__name__}, which reads only {list(self.KEYS)}')
        rate = (paramwise_cfg or {}).get('layer_decay_rate', 1.0)
        if not isinstance(rate, (int, float)) or not 0 < rate <= 1:
            raise ValueError(f'optim_wrapper.paramwise_cfg.layer_decay_rate must be in (0, 1], got {rate!r}')
        super().__init__(optim_wrapper_cfg, paramwise_cfg)

    def add_params(self, params: List[dict], module: nn.Module, prefix: str = '', **kwargs):
        cfg = dict(self.paramwise_cfg or {})
        rate = float(cfg.get('layer_decay_rate', 1.0))
        num_layers = cfg.get('num_layers')
        backbone = getattr(getattr(module, 'module', module), 'backbone', None)
        depth = getattr(backbone, 'num_layers', None)
        if num_layers is None:
            num_layers = depth
            if num_layers is None:
                raise ValueError('InternViTLayerDecayOptimWrapperConstructor: set paramwise_cfg.num_layers '
                                 '(the model has no backbone.num_layers)')
        elif depth is not None and int(num_layers) != int(depth):
            raise ValueError(f'optim_wrapper.paramwise_cfg.num_layers is {num_layers} but the backbone has '
                             f'{depth} layers: drop the key (the depth is read from the model)')
        exempt = bool(cfg.get('exempt_pos_embed_cls_token', False))
        base_lr = self.base_lr
        base_wd = self.base_wd or 0.0
        groups = {}
        for name, param in module.named_parameters():
            if not param.requires_grad:
                continue
            lid = layer_id_for(name, num_layers)
            nowd = no_weight_decay(name, param, exempt)
            key = (lid, nowd)
            if key not in groups:
                scale = rate ** (num_layers + 1 - lid)
                groups[key] = dict(params=[], lr=base_lr * scale, weight_decay=0.0 if nowd else base_wd,
                                   lr_scale=scale, layer_id=lid, param_names=[])
            groups[key]['params'].append(param)
            groups[key]['param_names'].append(name)
        for key in sorted(groups):
            g = groups[key]
            g.pop('param_names')
            params.append(g)
        print_log(f'layer-wise lr decay: rate {rate}, {num_layers} layers, {len(groups)} parameter groups, '
                  f'pos_embed/cls_token weight decay {"exempt" if exempt else "kept (as executed)"}',
                  logger='current')
