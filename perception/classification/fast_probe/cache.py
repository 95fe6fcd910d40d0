"""The feature cache: memory-mapped float16 features, labels and validity under a manifest that
pins model, checkpoint hash, transform and image list; a cache made otherwise is refused."""
import hashlib
import json
import os.path as osp
from typing import Optional

import numpy as np

from ...common.files import atomic_write
from ...common.errors import InputError


CACHE_VERSION = 1


class CacheMismatchError(InputError, ValueError):
    """A feature cache that was made with another model, checkpoint, transform or image list."""


def backbone_checkpoint(cfg) -> Optional[str]:
    ic = cfg.model.backbone.get('init_cfg') or {}
    return ic.get('checkpoint') if ic.get('type') == 'Pretrained' else None



class FeatureCache:
    """``{split}/features.npy`` (float16 [N, D] memmap), ``labels.npy``, ``valid.npy``, ``manifest.json``."""

    def __init__(self, root: str, split: str):
        self.dir = osp.join(root, split)
        self.manifest_path = osp.join(self.dir, 'manifest.json')

    def manifest(self) -> Optional[dict]:
        if not osp.isfile(self.manifest_path):
            return None
        return json.load(open(self.manifest_path))

    def write_manifest(self, m: dict):
        with atomic_write(self.manifest_path) as tmp:
            tmp.write_text(json.dumps(m, indent=1))

    def arrays(self, mode='r'):
        f = np.load(osp.join(self.dir, 'features.npy'), mmap_mode=mode)
        y = np.load(osp.join(self.dir, 'labels.npy'))
        v = np.load(osp.join(self.dir, 'valid.npy'), mmap_mode=mode)
        return f, y, v


def cache_identity(cfg, split, dataset, pipeline, n_blocks, ckpt_hash) -> dict:
    paths = [dataset.get_data_info(i)['img_path'] for i in range(len(dataset))]
    return {
        'version': CACHE_VERSION,
        'split': split,
        'model': {'arch': dict(arch_of(cfg)), 'n_last_blocks': n_blocks},
        'checkpoint': {'path': backbone_checkpoint(cfg), 'sha256': ckpt_hash},
        'transform': json.loads(json.dumps(pipeline, default=str)),
        'images': {'count': len(paths), 'sha256': hashlib.sha256('\n'.join(paths).encode()).hexdigest()},
    }


def arch_of(cfg):
    from ...layers.vision_transformer import parse_arch
    return parse_arch(cfg.model.backbone.arch)
