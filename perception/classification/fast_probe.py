"""Fast linear probing: extract frozen features once, cache them, train many heads in one pass.

The reference reruns the 6B for every epoch of every learning rate. Here the backbone runs once
per image (deterministic test transform), features go to memory-mapped float16 arrays under a
manifest that pins model, checkpoint hash, transform and image list (a cache made otherwise is
refused, not reused), an interrupted extraction resumes where it stopped, and a grid of
(feature choice x learning rate) heads trains on the cached features in one pass per batch
(dinov2-style). The best head is saved as a checkpoint the classification config loads.

Feature layout per image, for ``n = max(n_last_blocks)`` last blocks ``b``:
``[cls_b, mean_patch_b for b in the n last blocks, last block first]`` (each ``C`` wide).
Choices: ``cls`` (last cls), ``cls_patch`` (InternVL's cls_patch_concat: last cls + last mean
patch), ``cls_patch_lastN`` (the same for N last blocks, concatenated).
"""
import hashlib
import json
import math
import os
import os.path as osp
import time
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch
from mmengine.logging import print_log
from torch import nn

from ..checkpoint.io import atomic_write
from ..deploy.files import sha256_path

CACHE_VERSION = 1
IN_MEMORY_BYTES = 2 << 30  # feature caches up to 2 GiB (as float32) are trained from RAM


class CacheMismatchError(ValueError):
    """A feature cache that was made with another model, checkpoint, transform or image list."""


def _backbone_checkpoint(cfg) -> Optional[str]:
    ic = cfg.model.backbone.get('init_cfg') or {}
    return ic.get('checkpoint') if ic.get('type') == 'Pretrained' else None


def build_frozen_backbone(cfg, device='cpu'):
    from .. import models  # noqa: F401  (registers InternViT in mmpretrain's MODELS)
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
    import copy

    from mmengine.registry import init_default_scope
    from mmpretrain.registry import DATASETS
    init_default_scope('mmpretrain')
    dcfg = copy.deepcopy(cfg[f'{split}_dataloader']['dataset'])
    dcfg['pipeline'] = copy.deepcopy(cfg.test_pipeline)
    return DATASETS.build(dcfg), dcfg['pipeline']


def _preprocess(cfg, imgs: List[torch.Tensor]) -> torch.Tensor:
    dp = cfg.get('data_preprocessor') or cfg.model.get('data_preprocessor') or {}
    mean = torch.tensor(dp.get('mean', [123.675, 116.28, 103.53])).view(1, 3, 1, 1)
    std = torch.tensor(dp.get('std', [58.395, 57.12, 57.375])).view(1, 3, 1, 1)
    x = torch.stack(imgs).float()
    if dp.get('to_rgb', True):
        x = x[:, [2, 1, 0]]
    return (x - mean) / std


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


def _identity(cfg, split, dataset, pipeline, n_blocks, ckpt_hash) -> dict:
    paths = [dataset.get_data_info(i)['img_path'] for i in range(len(dataset))]
    return {
        'version': CACHE_VERSION,
        'split': split,
        'model': {'arch': dict(_arch_of(cfg)), 'n_last_blocks': n_blocks},
        'checkpoint': {'path': _backbone_checkpoint(cfg), 'sha256': ckpt_hash},
        'transform': json.loads(json.dumps(pipeline, default=str)),
        'images': {'count': len(paths), 'sha256': hashlib.sha256('\n'.join(paths).encode()).hexdigest()},
    }


def _arch_of(cfg):
    from ..layers.vision_transformer import parse_arch
    return parse_arch(cfg.model.backbone.arch)


def extract_features(cfg, split: str, cache_root: str, n_last_blocks: int = 1, batch_size: int = 32,
                     device: str = 'cpu', amp: bool = False, overwrite: bool = False,
                     ckpt_hash: Optional[str] = None, stop_after: Optional[int] = None) -> FeatureCache:
    """Extract (or resume extracting) the features of ``split`` ('train' | 'val') into the cache.

    ``stop_after`` (images) interrupts on purpose (tests of resume). Unreadable images are reported by
    name and marked invalid (left out of training and evaluation)."""
    from tqdm import tqdm
    cache = FeatureCache(cache_root, split)
    dataset, pipeline = build_eval_dataset(cfg, split)
    ckpt = _backbone_checkpoint(cfg)
    if ckpt_hash is None:
        ckpt_hash = sha256_path(ckpt) if ckpt else 'random-init'
    ident = _identity(cfg, split, dataset, pipeline, n_last_blocks, ckpt_hash)
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
            x = _preprocess(cfg, imgs).to(device)
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
        if time.time() - t_last > 20 or i >= end:  # checkpoint the progress
            feats.flush()
            valid.flush()
            manifest.update(num_done=i, bad_images=bad)
            cache.write_manifest(manifest)
            t_last = time.time()
    bar.close()
    return cache


# ----------------------------------------------------------------------------- many heads
def feature_choices(C: int, n_blocks: int, wanted: Sequence[int]) -> Dict[str, slice]:
    out = {'cls': slice(0, C), 'cls_patch': slice(0, 2 * C)}
    for n in wanted:
        if 1 < n <= n_blocks:
            out[f'cls_patch_last{n}'] = slice(0, 2 * C * n)
    return out


class HeadGrid(nn.Module):
    """One BatchNorm(eps 1e-6) + Linear head per (feature choice, lr), all trained in one pass.

    Heads on the same feature choice share the BatchNorm statistics (they normalise the same
    features) and are evaluated as one batched matmul: per choice, affine ``gamma/beta [L, d]`` and
    classifier ``weight [L, K, d]``, ``bias [L, K]`` for the ``L`` learning rates. Per-head learning
    rates are exact: SGD (momentum, nesterov, no weight decay) is linear in the gradient, so scaling
    head ``l``'s gradient by ``lr_l`` and stepping with the shared schedule equals a param group per lr.
    """

    def __init__(self, choices: Dict[str, slice], lrs: Sequence[float], num_classes: int):
        super().__init__()
        self.choices = dict(choices)
        self.lrs = [float(x) for x in lrs]
        self.bn = nn.ModuleDict()
        self.params = nn.ParameterDict()
        L = len(self.lrs)
        for name, sl in self.choices.items():
            d = sl.stop - sl.start
            self.bn[name] = nn.BatchNorm1d(d, eps=1e-6, affine=False)
            self.params[f'{name}__gamma'] = nn.Parameter(torch.ones(L, d))
            self.params[f'{name}__beta'] = nn.Parameter(torch.zeros(L, d))
            w = torch.empty(L, num_classes, d)
            nn.init.trunc_normal_(w, std=0.01)
            self.params[f'{name}__weight'] = nn.Parameter(w)
            self.params[f'{name}__bias'] = nn.Parameter(torch.zeros(L, num_classes))

    @staticmethod
    def key(name: str, lr: float) -> str:
        return f'{name}_lr{lr:g}'

    @property
    def keys(self) -> List[str]:
        return [self.key(n, lr) for n in self.choices for lr in self.lrs]

    def forward(self, x) -> Dict[str, torch.Tensor]:
        """Logits per choice: ``[L, B, K]``."""
        out = {}
        for name, sl in self.choices.items():
            xn = self.bn[name](x[:, sl])
            g, b = self.params[f'{name}__gamma'], self.params[f'{name}__beta']
            w = self.params[f'{name}__weight']
            # (xn * g_l + b_l) W_l^T + c_l  ==  xn (g_l * W_l)^T + (b_l W_l^T + c_l): one [B, L*K] matmul
            L, K, d = w.shape
            wf = (w * g[:, None, :]).reshape(L * K, d)
            bias = torch.einsum('ld,lkd->lk', b, w) + self.params[f'{name}__bias']
            out[name] = (xn @ wf.t()).view(-1, L, K).transpose(0, 1) + bias[:, None]
        return out

    def clip_and_scale_grads(self, max_norm: float = 5.0):
        """Per-head gradient clipping (as each head alone would be clipped), then the lr scaling."""
        lr = torch.tensor(self.lrs)
        for name in self.choices:
            ps = [self.params[f'{name}__{k}'] for k in ('gamma', 'beta', 'weight', 'bias')]
            sq = sum(p.grad.flatten(1).pow(2).sum(1) for p in ps)
            factor = (max_norm / (sq.sqrt() + 1e-6)).clamp(max=1.0) * lr
            for p in ps:
                p.grad.mul_(factor.view(-1, *([1] * (p.grad.ndim - 1))))

    def head_state(self, key: str) -> Dict[str, torch.Tensor]:
        """``norm.*`` (BatchNorm1d with affine) and ``fc.*`` (Linear) of one head."""
        name, lr = key.rsplit('_lr', 1)
        i = self.lrs.index(float(lr))
        bn = self.bn[name]
        return {'norm.weight': self.params[f'{name}__gamma'][i], 'norm.bias': self.params[f'{name}__beta'][i],
                'norm.running_mean': bn.running_mean, 'norm.running_var': bn.running_var,
                'norm.num_batches_tracked': bn.num_batches_tracked,
                'fc.weight': self.params[f'{name}__weight'][i], 'fc.bias': self.params[f'{name}__bias'][i]}


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


def save_head(grid: HeadGrid, key: str, path: str, meta: dict):
    """A classifier checkpoint holding ``head.norm.*`` / ``head.fc.*`` (mmengine layout)."""
    sd = {f'head.{k}': v.detach().cpu().clone() for k, v in grid.head_state(key).items()}
    with atomic_write(path) as tmp:
        torch.save({'state_dict': sd, 'meta': meta}, tmp)
    return path


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
    cache_dir = cache_dir or osp.join(work_dir, 'feature_cache')
    os.makedirs(work_dir, exist_ok=True)
    ckpt = _backbone_checkpoint(cfg)
    t0 = time.perf_counter()
    h = sha256_path(ckpt) if ckpt else 'random-init'
    n = max(nlb)
    caches = {s: extract_features(cfg, s, cache_dir, n, batch_size_extract, device, amp, overwrite, h)
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


def plain_probe_epoch_seconds(cfg, device='cpu', max_images: Optional[int] = None) -> float:
    """One epoch of the plain probe: the frozen backbone reruns on every training image (train
    pipeline), then one head steps. The cost the cached sweep avoids."""
    from mmengine.registry import init_default_scope
    from mmpretrain.registry import DATASETS
    import copy
    init_default_scope('mmpretrain')
    backbone = build_frozen_backbone(cfg, device)
    dataset = DATASETS.build(copy.deepcopy(cfg.train_dataloader.dataset))
    C = backbone.embed_dims
    head = nn.Sequential(nn.BatchNorm1d(2 * C, eps=1e-6), nn.Linear(2 * C, int(cfg.model.head.num_classes)))
    opt = torch.optim.SGD(head.parameters(), lr=0.01, momentum=0.9, nesterov=True)
    bs = int(cfg.train_dataloader.batch_size)
    n = len(dataset) if max_images is None else min(max_images, len(dataset))
    t0 = time.perf_counter()
    for s in range(0, n, bs):
        items = [dataset[j] for j in range(s, min(s + bs, n))]
        x = _preprocess(cfg, [it['inputs'] for it in items]).to(device)
        y = torch.tensor([int(it['data_samples'].gt_label) for it in items])
        with torch.no_grad():
            fmap, cls = backbone(x)[-1]
        feat = torch.cat([cls, fmap.flatten(2).mean(-1)], -1)
        loss = nn.functional.cross_entropy(head(feat), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return (time.perf_counter() - t0) * len(dataset) / n
