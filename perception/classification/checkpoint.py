"""Classifier checkpoints: InternVL's ImageNet head (format D) and this project's own, strictly."""
from typing import Dict

from mmengine.logging import print_log

from ..checkpoint.errors import CheckpointError
from ..checkpoint.formats import strip_common_prefix
from ..checkpoint.loader import load_pretrained_into, open_checkpoint, strict_copy


def convert_imagenet_head(sd: Dict) -> Dict:
    """Pure: format D (``norm.*`` BatchNorm over 6400, ``head.*`` Linear(6400, 1000)) -> classifier keys."""
    sd = strip_common_prefix(sd, 'module.')
    out = {}
    for k, v in sd.items():
        if k.startswith('norm.'):
            out['head.norm.' + k[len('norm.'):]] = v
        elif k.startswith('head.'):
            out['head.fc.' + k[len('head.'):]] = v
        else:
            out[k] = v
    return out


def load_classifier_checkpoint(model, path, backbone_already_loaded: bool = False):
    """Strictly load a classifier checkpoint. A head-only file (format D, or a head saved by
    ``tools/linear_probe.py``) takes the backbone from the backbone's ``init_cfg`` checkpoint."""
    model = getattr(model, 'module', model)
    src = open_checkpoint(path)
    keys = [k[len('module.'):] if k.startswith('module.') else k for k in src.tensors]
    is_format_d = 'head.weight' in keys and any(k.startswith('norm.') for k in keys)
    sd = convert_imagenet_head(src.tensors) if is_format_d else strip_common_prefix(dict(src.tensors), 'module.')
    skip = None
    if not any(k.startswith('backbone.') for k in sd):
        if not backbone_already_loaded:
            ckpt = (getattr(model.backbone, 'init_cfg', None) or {}).get('checkpoint')
            if not ckpt:
                raise CheckpointError(f'{path} holds only a head; set model.backbone.init_cfg=dict(type='
                                      '"Pretrained", checkpoint=...) to the backbone it was trained on')
            load_pretrained_into(model.backbone, ckpt)
        skip = 'backbone.'
    strict_copy(model, sd, path, skip_prefix=skip, what='the classifier')
    print_log(f'loaded classifier checkpoint {path} ({len(sd)} tensors)', logger='current')
    return model
