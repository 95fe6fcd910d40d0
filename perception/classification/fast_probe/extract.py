"""Feature extraction: the frozen backbone once per image (deterministic test transform) into the
cache, resumable, unreadable images reported by name and left out."""
import copy
import os
import os.path as osp
import time
from typing import List, Optional

import numpy as np
import torch
from mmengine.logging import print_log

from ...common.files import sha256_path
from .cache import CacheMismatchError, FeatureCache, backbone_checkpoint, cache_identity


def build_frozen_backbone(cfg, device='cpu'):
    from mmpretrain.registry import MODELS
    from mmengine.registry import init_default_scope
    init_default_scope('mmpretrain')
    bcfg = dict(cfg.model.backbone)
    bcfg.update(frozen=True, output_cls_token=True)
    backbone = MODELS.build(bcfg)
    backbone.init_weights()
    return backbone.to(device).eval()


def build_eval_dataset(cfg, split: str):
    """The split's dataset with the deterministic test pipeline (features are cached once)."""
    from mmengine.registry import init_default_scope
    from mmpretrain.registry import DATASETS
    from ..datasets import pass_num_classes
    init_default_scope('mmpretrain')
    dcfg = pass_num_classes(copy.deepcopy(cfg))[f'{split}_dataloader']['dataset']  # one copy, not two
    dcfg['pipeline'] = copy.deepcopy(cfg.test_pipeline)
    return DATASETS.build(dcfg), dcfg['pipeline']


def preprocess(cfg, imgs: List[torch.Tensor]) -> torch.Tensor:
    dp = cfg.get('data_preprocessor') or cfg.model.get('data_preprocessor') or {}
    mean = torch.tensor(dp.get('mean', [123.675, 116.28, 103.53])).view(1, 3, 1, 1)
    std = torch.tensor(dp.get('std', [58.395, 57.12, 57.375])).view(1, 3, 1, 1)
    x = torch.stack(imgs).float()
    if dp.get('to_rgb', True):
        x = x[:, [2, 1, 0]]
    return (x - mean) / std


def extract_features(cfg, split: str, cache_root: str, n_last_blocks: int = 1, batch_size: int = 32,
                     device: str = 'cpu', amp: bool = False, overwrite: bool = False,
                     ckpt_hash: Optional[str] = None, stop_after: Optional[int] = None,
                     save_every_s: float = 20.0) -> FeatureCache:
    """Extract (or resume extracting) the features of ``split`` ('train' | 'val') into the cache.

    ``stop_after`` (images) interrupts on purpose (tests of resume). Progress is saved every
    ``save_every_s`` seconds (features flushed, then the manifest's ``num_done`` replaced atomically: a
    kill at any moment loses at most that much work). Unreadable images are reported by name and marked
    invalid (left out of training and evaluation)."""
    from tqdm import tqdm
    cache = FeatureCache(cache_root, split)
    dataset, pipeline = build_eval_dataset(cfg, split)
    ckpt = backbone_checkpoint(cfg)
    if ckpt_hash is None:
        ckpt_hash = sha256_path(ckpt) if ckpt else 'random-init'
    ident = cache_identity(cfg, split, dataset, pipeline, n_last_blocks, ckpt_hash)
    old = cache.manifest()
    N = len(dataset)
    C = ident['model']['arch']['embed_dims']
    D = 2 * C * n_last_blocks
    if old is not None and not overwrite:
        diff = [k for k in ident if old.get(k) != ident[k]]
        if diff:
            raise CacheMismatchError(
                f'feature cache {cache.dir} was made with a different {", ".join(diff)}: refusing to reuse it '
                '(pass overwrite=True / --overwrite to rebuild it, or use another --cache-dir)')
        done = int(old.get('num_done', 0))
        if done >= N:
            print_log(f'{split}: all {N} cached features reused from {cache.dir}', logger='current')
            return cache
        feats, _, valid = cache.arrays('r+')
        print_log(f'{split}: resuming feature extraction at image {done} of {N}', logger='current')
    else:
        os.makedirs(cache.dir, exist_ok=True)
        feats = np.lib.format.open_memmap(osp.join(cache.dir, 'features.npy'), mode='w+', dtype=np.float16,
                                          shape=(N, D))
        labels = np.array([int(dataset.get_data_info(i)['gt_label']) for i in range(N)], dtype=np.int64)
        np.save(osp.join(cache.dir, 'labels.npy'), labels)
        valid = np.lib.format.open_memmap(osp.join(cache.dir, 'valid.npy'), mode='w+', dtype=np.bool_, shape=(N, ))
        done = 0
        cache.write_manifest(dict(ident, num_done=0, dim=D, embed_dims=C, bad_images=[]))
    backbone = build_frozen_backbone(cfg, device)
    manifest = cache.manifest()
    bad = list(manifest.get('bad_images', []))
    end = N if stop_after is None else min(N, done + stop_after)
    bar = tqdm(total=end - done, desc=f'features {split}', unit='img')
    t_last = time.time()
    i = done
    while i < end:
        idx = list(range(i, min(i + batch_size, end)))
        imgs, ok = [], []
        for j in idx:
            try:
                imgs.append(dataset[j]['inputs'])
                ok.append(j)
            except Exception as e:  # unreadable / corrupt image: report by name, keep going
                path = dataset.get_data_info(j)['img_path']
                bad.append(path)
                print_log(f'skipped unreadable image {path}: {type(e).__name__}: {e}', logger='current', level=30)
        if imgs:
            x = preprocess(cfg, imgs).to(device)
            with torch.no_grad(), torch.autocast(torch.device(device).type, dtype=torch.bfloat16, enabled=amp):
                outs = backbone.get_intermediate_layers(x, n_last_blocks, return_class_token=True)
            parts = []
            for patches, cls in reversed(outs):  # last block first
                parts += [cls.float(), patches.float().mean(1)]
            feats[ok] = torch.cat(parts, -1).cpu().numpy().astype(np.float16)
            valid[ok] = True
        for j in idx:
            if j not in ok:
                valid[j] = False
        i = idx[-1] + 1
        bar.update(len(idx))
        if time.time() - t_last >= save_every_s or i >= end:  # checkpoint the progress
            feats.flush()
            valid.flush()
            manifest.update(num_done=i, bad_images=bad)
            cache.write_manifest(manifest)
            t_last = time.time()
    bar.close()
    return cache
