"""Memory and step-time plan for full-parameter training of InternViT-6B segmentors with FSDP.

Everything is computed from the model itself: parameter counts from the config's segmentor built on
the ``meta`` device, activation bytes measured (saved-for-backward tensors, counted by storage) on
one real-width block run in bf16 on the CPU and on the pyramid + heads on ``meta``, FLOPs counted by
``torch.utils.flop_counter`` on ``meta``. The GPU throughput and bandwidth figures are stated inputs.
"""
from typing import Dict, Sequence

import torch

GiB = 2 ** 30


class SavedTensorBytes:
    """Bytes of the tensors autograd saves for backward (each storage counted once)."""

    def __init__(self):
        self.storages = {}

    def pack(self, t):
        try:
            st = t.untyped_storage()
            key = (st.data_ptr() if t.device.type != 'meta' else id(st), t.device.type)
            self.storages[key] = max(self.storages.get(key, 0), st.nbytes())
        except (RuntimeError, NotImplementedError):
            self.storages[(id(t), 'x')] = t.numel() * t.element_size()
        return t

    def __enter__(self):
        self._ctx = torch.autograd.graph.saved_tensors_hooks(self.pack, lambda t: t)
        self._ctx.__enter__()
        return self

    def __exit__(self, *a):
        self._ctx.__exit__(*a)

    @property
    def total(self) -> int:
        return sum(self.storages.values())


def build_segmentor(config: str, device='meta'):
    from perception import ensure_registered
    ensure_registered()
    from mmengine.config import Config
    from mmengine.registry import init_default_scope
    from mmseg.registry import MODELS

    from .apis import _replace_syncbn
    init_default_scope('mmseg')
    cfg = Config.fromfile(config)
    _replace_syncbn(cfg.model)
    with torch.device(device):
        model = MODELS.build(cfg.model)
    return cfg, model


def param_counts(model) -> Dict[str, int]:
    out = {'backbone': 0, 'blocks': 0, 'largest_block': 0, 'neck': 0, 'decode_head': 0, 'auxiliary_head': 0}
    for name, p in model.named_parameters():
        top = name.split('.')[0]
        out[top] = out.get(top, 0) + p.numel()
        if name.startswith('backbone.blocks.'):
            out['blocks'] += p.numel()
    out['largest_block'] = max(sum(p.numel() for p in b.parameters()) for b in model.backbone.blocks)
    out['total'] = sum(p.numel() for p in model.parameters())
    out['root_unit'] = out['total'] - out['blocks']  # what FSDP keeps in the root unit
    return out


def measure_block_activations(embed_dims=3200, heads=25, mlp=12800, tokens=1297, batch=2,
                              dtype=torch.bfloat16) -> Dict[str, int]:
    """Run one real-width block forward in ``dtype`` on the CPU and count what it saves for backward."""
    from .layers.block import Block
    torch.manual_seed(0)
    with torch.device('meta'):
        blk = Block(embed_dims, heads, mlp, attn_backend='sdpa')
    blk.to_empty(device='cpu').to(dtype)
    with torch.no_grad():
        for p in blk.parameters():
            p.normal_(0, 0.02)
    x = torch.randn(batch, tokens, embed_dims, dtype=dtype, requires_grad=True)
    with SavedTensorBytes() as saved:
        y = blk(x)
    return {'saved_bytes': saved.total, 'input_bytes': x.numel() * x.element_size(),
            'output_bytes': y.numel() * y.element_size()}


def measure_head_activations(model, img=504, batch=2, dtype=torch.bfloat16) -> Dict[str, int]:
    """Saved-for-backward bytes of pyramid + decode head + auxiliary head, on ``meta``."""
    grid = img // model.backbone.patch_size
    C = model.backbone.embed_dims
    n_in = len(model.backbone.out_indices)
    feats = [torch.randn(batch, C, grid, grid, device='meta', dtype=dtype, requires_grad=True) for _ in range(n_in)]
    model = model.to(dtype)
    with SavedTensorBytes() as saved:
        x = model.neck(feats) if model.with_neck else feats
        out = model.decode_head(x)
        if model.with_auxiliary_head:
            model.auxiliary_head(x)
    return {'saved_bytes': saved.total, 'logits_shape': tuple(out.shape)}


def count_flops(model, img=504, batch=2) -> int:
    """Forward FLOPs of the whole segmentor (backbone + neck + heads, no upsampling of the loss) at
    ``batch x img x img``, counted on ``meta``."""
    from torch.utils.flop_counter import FlopCounterMode
    x = torch.randn(batch, 3, img, img, device='meta')
    with FlopCounterMode(display=False) as fc, torch.no_grad():
        feats = model.backbone(x)
        feats = model.neck(feats) if model.with_neck else feats
        model.decode_head(feats)
        if model.with_auxiliary_head:
            model.auxiliary_head(feats)
    return int(fc.get_total_flops())


def plan(counts, block_act, head_act, flops_fwd, backbone_flops_fwd, num_layers, world_sizes: Sequence[int],
         gpu_mem_gib=80.0, peak_tflops=989.0, mfu=0.4, batch_per_gpu=2, intra_bw=300e9, inter_bw=50e9,
         gpus_per_node=8) -> list:
    """Per-GPU memory (GiB) and step time for FSDP FULL_SHARD + bf16 + activation checkpointing."""
    rows = []
    P = counts['total']
    cases = [(n, 'FULL_SHARD') for n in world_sizes] + \
        [(n, 'HYBRID_SHARD') for n in world_sizes if n > gpus_per_node]
    for n, strategy in cases:
        shard = n if strategy == 'FULL_SHARD' else gpus_per_node  # HYBRID: shard in a node, replicate across
        weights = 4 * P / shard                  # fp32 master parameters, sharded
        grads = 4 * P / shard                    # fp32 gradients, sharded
        optim = 8 * P / shard                    # AdamW exp_avg + exp_avg_sq, sharded
        # transient full bf16 copies: root unit (embeddings, pyramid, heads) params + grads, and two
        # block units (current + prefetched) params + grads
        gathered = 2 * (counts['root_unit'] * 2) + 2 * 2 * (counts['largest_block'] * 2)
        # activations: with checkpointing each block keeps its input; one block at a time is recomputed
        acts = num_layers * block_act['input_bytes'] + block_act['saved_bytes'] + head_act['saved_bytes']
        acts_no_cp = num_layers * block_act['saved_bytes'] + head_act['saved_bytes']
        total = weights + grads + optim + gathered + acts
        # compute: forward + backward (2x) + recomputed backbone forward, per GPU
        step_flops = 3 * flops_fwd + backbone_flops_fwd
        compute_s = step_flops / (peak_tflops * 1e12 * mfu)
        # communication: all-gather bf16 params in forward and backward, reduce-scatter fp32 grads
        # all-gather bf16 params in forward and backward, reduce-scatter fp32 grads, over the shard group
        shard_bw = intra_bw if shard <= gpus_per_node else inter_bw
        comm_s = (2 * 2 + 4) * P * (shard - 1) / shard / shard_bw
        if strategy == 'HYBRID_SHARD':  # plus an all-reduce of each GPU's fp32 gradient shard across nodes
            nodes = n // gpus_per_node
            comm_s += 2 * 4 * (P / shard) * (nodes - 1) / nodes / inter_bw
        rows.append(dict(gpus=n, strategy=strategy, weights=weights / GiB, grads=grads / GiB, optim=optim / GiB,
                         gathered=gathered / GiB, acts=acts / GiB, acts_no_cp=acts_no_cp / GiB, total=total / GiB,
                         fits=total / GiB < 0.9 * gpu_mem_gib, compute_s=compute_s, comm_s=comm_s,
                         step_s=max(compute_s, comm_s), imgs_per_s=n * batch_per_gpu / max(compute_s, comm_s)))
    return rows
