"""Training and evaluating the head grid on cached features; ``run_linear_probe`` end to end."""
import json
import math
import os
import os.path as osp
import time
from typing import Optional, Sequence

import numpy as np
import torch
from mmengine.logging import print_log
from torch import nn

from ...common.files import atomic_write
from ...common.files import sha256_path
from .cache import FeatureCache, backbone_checkpoint
from .extract import extract_features
from .heads import HeadGrid, feature_choices, save_head


IN_MEMORY_BYTES = 2 << 30  # feature caches up to 2 GiB (as float32) are trained from RAM


def _batches(valid_idx: np.ndarray, batch_size: int, rng: Optional[np.random.Generator]):
    idx = valid_idx.copy()
    if rng is not None:
        rng.shuffle(idx)
    for s in range(0, len(idx), batch_size):
        yield np.sort(idx[s:s + batch_size])


def train_heads(train_cache: FeatureCache, val_cache: FeatureCache, num_classes: int,
                lrs: Sequence[float], n_last_blocks: Sequence[int], epochs: int = 10, batch_size: int = 256,
                label_smoothing: float = 0.0, seed: int = 0, device: str = 'cpu') -> dict:
    """Train the head grid (SGD nesterov 0.9, wd 0, 1 warmup epoch then cosine to 0, clip 5.0 per
    head); returns per-head val top-1/top-5, the best key and the grid."""
    ftr, ytr, vtr = train_cache.arrays()
    fva, yva, vva = val_cache.arrays()
    m = train_cache.manifest()
    C, n_blocks = m['embed_dims'], m['model']['n_last_blocks']
    if ytr.max() >= num_classes or yva.max() >= num_classes:
        raise ValueError(f'labels up to {max(ytr.max(), yva.max())} but num_classes={num_classes}')
    torch.manual_seed(seed)
    grid = HeadGrid(feature_choices(C, n_blocks, n_last_blocks), lrs, num_classes).to(device)
    opt = torch.optim.SGD(grid.parameters(), lr=1.0, momentum=0.9, nesterov=True, weight_decay=0.0)
    train_idx = np.flatnonzero(np.asarray(vtr))
    steps_per_epoch = math.ceil(len(train_idx) / batch_size)
    total, warm = epochs * steps_per_epoch, steps_per_epoch
    rng = np.random.default_rng(seed)
    step = 0
    epoch_times = []
    # small caches are read once into memory (float32); large ones stream from the memmap per batch
    in_memory = ftr.shape[0] * ftr.shape[1] * 4 <= IN_MEMORY_BYTES
    if in_memory:
        ftr_t, ytr_t = torch.from_numpy(np.asarray(ftr, dtype=np.float32)).to(device), torch.from_numpy(ytr).to(device)
    for ep in range(epochs):
        t0 = time.perf_counter()
        grid.train()
        for b in _batches(train_idx, batch_size, rng):
            sched = (step + 1) / warm if step < warm else \
                0.5 * (1 + math.cos(math.pi * (step - warm) / max(1, total - warm)))
            for g in opt.param_groups:
                g['lr'] = sched
            if in_memory:
                bt = torch.from_numpy(b)
                x, y = ftr_t[bt], ytr_t[bt]
            else:
                x = torch.from_numpy(np.asarray(ftr[b], dtype=np.float32)).to(device)
                y = torch.from_numpy(ytr[b]).to(device)
            loss = 0.
            for logits in grid(x).values():  # [L, B, K]: the mean over heads of each head's loss, x L
                L = logits.shape[0]
                loss = loss + L * nn.functional.cross_entropy(
                    logits.reshape(-1, logits.shape[-1]), y.repeat(L), label_smoothing=label_smoothing)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            grid.clip_and_scale_grads(5.0)
            opt.step()
            step += 1
        epoch_times.append(time.perf_counter() - t0)
    results = evaluate_heads(grid, fva, yva, vva, device)
    best = max(results, key=lambda k: (results[k]['top1'], results[k]['top5']))
    return {'results': results, 'best': best, 'grid': grid, 'train_s': float(sum(epoch_times)), 'epochs': epochs,
            'epoch_s': float(np.median(epoch_times)), 'num_train': int(len(train_idx))}


@torch.no_grad()
def evaluate_heads(grid: HeadGrid, f, y, valid, device='cpu', batch_size: int = 1024) -> dict:
    grid.eval()
    idx = np.flatnonzero(np.asarray(valid))
    hits1 = {k: 0 for k in grid.keys}
    hits5 = {k: 0 for k in grid.keys}
    for b in _batches(idx, batch_size, None):
        x = torch.from_numpy(np.asarray(f[b], dtype=np.float32)).to(device)
        t = torch.from_numpy(y[b]).to(device)
        for name, logits in grid(x).items():
            top = logits.topk(min(5, logits.shape[-1]), dim=-1).indices  # [L, B, k]
            for i, lr in enumerate(grid.lrs):
                k = grid.key(name, lr)
                hits1[k] += int((top[i, :, 0] == t).sum())
                hits5[k] += int((top[i] == t[:, None]).any(1).sum())
    n = max(1, len(idx))
    return {k: {'top1': 100.0 * hits1[k] / n, 'top5': 100.0 * hits5[k] / n} for k in hits1}


def format_results(results: dict, best: str) -> str:
    lines = ['| head | top-1 | top-5 |', '|---|---|---|']
    for k in sorted(results, key=lambda k: -results[k]['top1']):
        mark = ' **best**' if k == best else ''
        lines.append(f"| {k}{mark} | {results[k]['top1']:.2f} | {results[k]['top5']:.2f} |")
    return '\n'.join(lines)


def run_linear_probe(cfg, work_dir: str, cache_dir: Optional[str] = None, device: str = 'cpu',
                     amp: bool = False, overwrite: bool = False, batch_size_extract: int = 32) -> dict:
    """Extract/cached features for train and val, sweep the head grid, save the best heads."""
    lp = dict(cfg.get('linear_probe') or {})
    lrs = tuple(lp.get('lrs', (1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1)))
    nlb = tuple(lp.get('n_last_blocks', (1, 4)))
    epochs = int(lp.get('epochs', 10))
    bs = int(lp.get('batch_size', 256))
    batch_size_extract = int(lp.get('extract_batch_size', batch_size_extract))
    save_every_s = float(lp.get('save_every_s', 20.0))
    unknown = sorted(set(lp) - {'lrs', 'n_last_blocks', 'epochs', 'batch_size', 'extract_batch_size', 'save_every_s'})
    if unknown:
        raise ValueError(f'linear_probe: unknown key(s) {unknown}; it takes lrs, n_last_blocks, epochs, batch_size, '
                         'extract_batch_size, save_every_s')
    cache_dir = cache_dir or osp.join(work_dir, 'feature_cache')
    os.makedirs(work_dir, exist_ok=True)
    ckpt = backbone_checkpoint(cfg)
    t0 = time.perf_counter()
    h = sha256_path(ckpt) if ckpt else 'random-init'
    n = max(nlb)
    caches = {s: extract_features(cfg, s, cache_dir, n, batch_size_extract, device, amp, overwrite, h,
                                  save_every_s=save_every_s)
              for s in ('train', 'val')}
    extract_s = time.perf_counter() - t0
    num_classes = int(cfg.model.head.num_classes)
    res = train_heads(caches['train'], caches['val'], num_classes, lrs, nlb, epochs, bs, device=device)
    best = res['best']
    meta = {'feature': best.split('_lr')[0], 'source_config': cfg.filename, 'backbone_checkpoint': ckpt,
            'backbone_sha256': h, 'top1': res['results'][best]['top1']}
    out = {'results': res['results'], 'best': best, 'extract_s': extract_s, 'epoch_s': res['epoch_s'],
           'num_heads': len(res['results'])}
    out['best_checkpoint'] = save_head(res['grid'], best, osp.join(work_dir, 'best_head.pth'), meta)
    # the best head the classification config can load directly (cls_patch_concat = 'cls_patch')
    loadable = max((k for k in res['results'] if k.startswith('cls_patch_lr')),
                   key=lambda k: res['results'][k]['top1'])
    out['config_head'] = loadable
    out['config_checkpoint'] = save_head(res['grid'], loadable, osp.join(work_dir, 'cls_patch_head.pth'),
                                         dict(meta, feature='cls_patch', top1=res['results'][loadable]['top1']))
    with atomic_write(osp.join(work_dir, 'linear_probe_results.json')) as tmp:
        tmp.write_text(json.dumps({k: v for k, v in out.items() if k != 'grid'}, indent=1, default=str))
    print_log('\n' + format_results(res['results'], best), logger='current')
    return out
