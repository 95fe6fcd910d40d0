"""Classifier checkpoints: InternVL's ImageNet head (format D) and this project's own, strictly."""
from typing import Dict

import torch
from mmengine.logging import print_log

from ..checkpoint.errors import CheckpointError, list_keys
from ..checkpoint.formats import _strip_common
from ..checkpoint.loader import load_pretrained_into, open_checkpoint


def convert_imagenet_head(sd: Dict) -> Dict:
    """Pure: format D (``norm.*`` BatchNorm over 6400, ``head.*`` Linear(6400, 1000)) -> classifier keys."""
    sd = _strip_common(sd, 'module.')
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
    sd = convert_imagenet_head(src.tensors) if is_format_d else _strip_common(dict(src.tensors), 'module.')
    skip = None
    if not any(k.startswith('backbone.') for k in sd):
        if not backbone_already_loaded:
            ckpt = (getattr(model.backbone, 'init_cfg', None) or {}).get('checkpoint')
            if not ckpt:
                raise CheckpointError(f'{path} holds only a head; set model.backbone.init_cfg=dict(type='
                                      '"Pretrained", checkpoint=...) to the backbone it was trained on')
            load_pretrained_into(model.backbone, ckpt)
        skip = 'backbone.'
    state = model.state_dict()
    missing = sorted(k for k in state if k not in sd and not (skip and k.startswith(skip)))
    unexpected = sorted(k for k in sd if k not in state)
    bad = [f'{k}: checkpoint {tuple(sd[k].shape)} vs model {tuple(state[k].shape)}'
           for k in sd if k in state and tuple(sd[k].shape) != tuple(state[k].shape)]
    if missing or unexpected or bad:
        parts = ([f'missing keys: {list_keys(missing)}'] if missing else []) + \
                ([f'unexpected keys: {list_keys(unexpected)}'] if unexpected else []) + \
                (['shape mismatch: ' + '; '.join(bad[:8])] if bad else [])
        raise CheckpointError(f'{path} does not fit the classifier:\n  ' + '\n  '.join(parts))
    with torch.no_grad():
        for k, lt in sd.items():
            state[k].copy_(lt.load())
            lt.release()
    print_log(f'loaded classifier checkpoint {path} ({len(sd)} tensors)', logger='current')
    return model
