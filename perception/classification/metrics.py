"""ImageNet variant metrics: 200-class subsets (ImageNet-A / -R) and ImageNet-ReaL.

The class lists come from timm's package data (``timm/data/_info``): the 1000 ImageNet synsets in
their standard (sorted) order, the ImageNet-A / -R synsets, and the ReaL labels of the 50k
validation images.
"""
import json
import os.path as osp
import re
from typing import List, Optional, Sequence

import numpy as np
import torch
from mmpretrain.evaluation import Accuracy
from ..registry import register


def _timm_info(name: str) -> str:
    import timm
    path = osp.join(osp.dirname(timm.__file__), 'data', '_info', name)
    if not osp.isfile(path):
        raise FileNotFoundError(f'{path} not found (timm package data)')
    return path


def imagenet_synsets() -> List[str]:
    return open(_timm_info('imagenet_synsets.txt')).read().split()


def subset_indices(subset: str) -> List[int]:
    """Indices into the 1000 ImageNet logits of the 200 classes of 'imagenet-a' or 'imagenet-r', in
    the sorted-synset order their ImageFolder labels use."""
    files = {'imagenet-a': 'imagenet_a_synsets.txt', 'imagenet-r': 'imagenet_r_synsets.txt'}
    if subset not in files:
        raise ValueError(f'subset must be one of {sorted(files)}, got {subset!r}')
    full = {w: i for i, w in enumerate(imagenet_synsets())}
    wnids = sorted(open(_timm_info(files[subset])).read().split())
    return [full[w] for w in wnids]


@register('METRICS', 'mmpretrain')
class SubsetAccuracy(Accuracy):
    """Top-k accuracy over a class subset of the 1000 logits (ImageNet-A / -R score only their 200
    classes). Ground-truth labels are indices into the subset (ImageFolder order of the synsets)."""

    def __init__(self, subset: str, topk=(1, 5), **kwargs):
        kwargs.setdefault('prefix', subset)  # metrics read 'imagenet-a/top1', ...
        super().__init__(topk=topk, **kwargs)
        self.subset = subset
        self.indices = torch.tensor(subset_indices(subset))

    def process(self, data_batch, data_samples: Sequence[dict]):
        for s in data_samples:
            s = dict(s)
            if 'pred_score' in s:
                s['pred_score'] = s['pred_score'][self.indices.to(s['pred_score'].device)]
            self.results.append({'pred_score': s['pred_score'].clone(), 'gt_label': s['gt_label'].clone()})



@register('METRICS', 'mmpretrain')
class ReaLAccuracy(Accuracy):
    """ImageNet-ReaL top-1: a prediction is right when it is in the image's set of ReaL labels;
    images with an empty set are left out. The image index comes from the validation file name
    (``ILSVRC2012_val_00000001.JPEG`` -> 0)."""

    def __init__(self, real_json: Optional[str] = None, **kwargs):
        kwargs.setdefault('prefix', 'real')  # metrics read 'real/top1'
        super().__init__(topk=(1, ), **kwargs)
        self.real = json.load(open(real_json or _timm_info('imagenet_real_labels.json')))

    def process(self, data_batch, data_samples: Sequence[dict]):
        for s in data_samples:
            m = re.search(r'(\d{8})', osp.basename(s.get('img_path', '')))
            if m is None:
                raise ValueError(f'ReaLAccuracy: cannot read the validation index from {s.get("img_path")!r}')
            self.results.append({'pred': int(s['pred_score'].argmax()), 'index': int(m.group(1)) - 1})

    def compute_metrics(self, results):
        hits = [r['pred'] in self.real[r['index']] for r in results if self.real[r['index']]]
        return {'top1': 100.0 * float(np.mean(hits)) if hits else float('nan')}
