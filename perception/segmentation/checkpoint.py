"""Load segmentor checkpoints strictly: InternVL's ADE20K releases (format C) and this project's own.

InternVL keeps the pyramid inside the backbone (``backbone.up1..up4``); here it is the neck
(``neck.up1..up4``). Frozen releases hold no ViT weights: the ViT then comes from the backbone's
``init_cfg`` checkpoint (format A), and every key of both files must be accounted for.
"""
import re
from typing import Dict, Optional

from mmengine.logging import print_log

from ..checkpoint.errors import CheckpointError
from ..checkpoint.formats import strip_common_prefix
from ..checkpoint.loader import load_pretrained_into, open_checkpoint, strict_copy
from ..layers.pos_embed import resample_abs_pos_embed

_PYRAMID = re.compile(r'^backbone\.(up[1-4]\..+)$')


def convert_segmentor_state(sd: Dict) -> Dict:
    """Pure: InternVL mmseg-0.x segmentor keys -> this project's segmentor keys."""
    sd = strip_common_prefix(sd, 'module.')
    out = {}
    for k, v in sd.items():
        m = _PYRAMID.match(k)
        out['neck.' + m.group(1) if m else k] = v
    return out


def load_segmentor_checkpoint(model, path, backbone_checkpoint: Optional[str] = None,
                              backbone_already_loaded: bool = False):
    """Strictly load ``path`` into an mmseg segmentor built by this project.

    When the file holds no ``backbone.*`` weights (a frozen release), the backbone is loaded from
    ``backbone_checkpoint`` (default: the backbone's ``init_cfg`` Pretrained checkpoint), strictly too,
    unless ``backbone_already_loaded``.
    """
    model = getattr(model, 'module', model)
    src = open_checkpoint(path)
    sd = convert_segmentor_state(src.tensors)
    if hasattr(model.backbone, 'interaction_indexes'):  # InternViTAdapter: the adapter's own strict loader
        return _load_adapter_segmentor(model, path, sd, backbone_already_loaded)
    skip = None
    if not any(k.startswith('backbone.') for k in sd) and backbone_already_loaded:
        skip = 'backbone.'
    elif not any(k.startswith('backbone.') for k in sd):
        ckpt = backbone_checkpoint or (getattr(model.backbone, 'init_cfg', None) or {}).get('checkpoint')
        if not ckpt:
            raise CheckpointError(f'{path} holds no backbone weights (a frozen release) and the config names '
                                  'no backbone checkpoint: set model.backbone.init_cfg=dict(type="Pretrained", '
                                  'checkpoint=...) to the ViT file (format A)')
        load_pretrained_into(model.backbone, ckpt)
        skip = 'backbone.'
    grid = model.backbone.pretrain_grid
    strict_copy(model, sd, path, skip_prefix=skip, what='the segmentor',
                resample={'backbone.pos_embed': lambda t: resample_abs_pos_embed(t, grid)})
    if hasattr(model.backbone, '_pos_cache'):
        model.backbone._pos_cache.clear()
    print_log(f'loaded segmentor checkpoint {path} ({len(sd)} tensors'
              + (', backbone from its own file)' if skip else ')'), logger='current')
    return model


def _load_adapter_segmentor(model, path, sd: Dict, backbone_already_loaded: bool):
    """An ``InternViTAdapter`` segmentor (this project's, or an InternVL-MMDetSeg one: its mmcv 1.x
    ``{'meta', 'state_dict', 'optimizer'}`` file, its DeepSpeed ``iter_N/global_stepN/mp_rank_00_model_states.pt``
    folder or that file's ``{'module': ...}`` release): the backbone through
    :func:`~perception.models.adapter_loading.load_adapter_state` (strict; another width or depth refused in one
    line naming the first mismatching key and both shapes), the heads strictly. The adapter is trained with the
    heads, so a file without ``backbone.*`` weights is refused (unless the backbone's own ``init_cfg`` loaded it)."""
    from ..checkpoint.formats import convert_to_internvit
    from ..models.adapter_loading import load_adapter_state
    backbone = {k[len('backbone.'):]: v for k, v in sd.items() if k.startswith('backbone.')}
    if backbone:
        vit, unused, _ = convert_to_internvit(backbone)
        load_adapter_state(model.backbone, vit, path, unused=unused, key_prefix='backbone.')
    elif not backbone_already_loaded:
        raise CheckpointError(f'{path} holds no backbone weights: an InternViTAdapter segmentor needs its trained '
                              'adapter (backbone.spm.*, backbone.interactions.*, ...) and ViT from the same file')
    heads = {k: v for k, v in sd.items() if not k.startswith('backbone.')}
    strict_copy(model, heads, path, skip_prefix='backbone.', what='the segmentor')
    print_log(f'loaded segmentor checkpoint {path} ({len(sd)} tensors'
              + (')' if backbone else ', backbone from its own init_cfg)'), logger='current')
    return model
