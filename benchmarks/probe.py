"""One epoch of the plain linear probe (``tools/linear_probe.py --benchmark``): the cost the cached
sweep of ``perception.classification.fast_probe`` avoids."""
import copy
import time
from typing import Optional

import torch


def plain_probe_epoch_seconds(cfg, device='cpu', max_images: Optional[int] = None) -> float:
    """One epoch of the plain probe: the frozen backbone reruns on every training image (train
    pipeline), then one head steps. Extrapolated to the whole training set from ``max_images``."""
    from mmengine.registry import init_default_scope
    from mmpretrain.registry import DATASETS
    from torch import nn

    from perception.classification.fast_probe import build_frozen_backbone, preprocess
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
        x = preprocess(cfg, [it['inputs'] for it in items]).to(device)
        y = torch.tensor([int(it['data_samples'].gt_label) for it in items])
        with torch.no_grad():
            fmap, cls = backbone(x)[-1]
        feat = torch.cat([cls, fmap.flatten(2).mean(-1)], -1)
        loss = nn.functional.cross_entropy(head(feat), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return (time.perf_counter() - t0) * len(dataset) / n
