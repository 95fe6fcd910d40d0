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
    """Bytes of the tensors autograd saves for backward (each storage counted once). Storages of
    ``exclude`` (the module's parameters, which linear layers save for backward) are not activations
    and are not counted."""

    def __init__(self, exclude=()):
        self.storages = {}
        self.exclude = {(t.untyped_storage().data_ptr(), t.device.type) for t in exclude if t.device.type != 'meta'}
        self.exclude_ids = {id(t) for t in exclude}

    def pack(self, t):
        if id(t) in self.exclude_ids:
            return t
        try:
            st = t.untyped_storage()
            key = (st.data_ptr() if t.device.type != 'meta' else id(st), t.device.type)
            if key not in self.exclude:
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


def measure_block_activations(embed_dims=3200, num_heads=25, feedforward_channels=12800, tokens=1297, batch=2,
                              dtype=torch.bfloat16) -> Dict[str, int]:
    """Run one real-width block forward in ``dtype`` on the CPU and count what it saves for backward."""
    from .layers.block import Block
    torch.manual_seed(0)
    with torch.device('meta'):
        blk = Block(embed_dims, num_heads, feedforward_channels, attn_backend='sdpa')
    blk.to_empty(device='cpu').to(dtype)
    with torch.no_grad():
        for p in blk.parameters():
            p.normal_(0, 0.02)
    x = torch.randn(batch, tokens, embed_dims, dtype=dtype, requires_grad=True)
    with SavedTensorBytes(exclude=list(blk.parameters())) as saved:
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
    with SavedTensorBytes(exclude=list(model.parameters())) as saved:
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


def _acts(block_act, head_act, num_layers, checkpointing: bool) -> float:
    """Activation bytes kept for backward: with checkpointing each block keeps its input and one block
    at a time is recomputed; without, every block keeps what it saves."""
    if checkpointing:
        return num_layers * block_act['input_bytes'] + block_act['saved_bytes'] + head_act['saved_bytes']
    return num_layers * block_act['saved_bytes'] + head_act['saved_bytes']


def ddp_memory(counts, block_act, head_act, num_layers, checkpointing: bool = False) -> dict:
    """Per-rank bytes of plain DDP with fp32 AdamW at its peak (the optimizer step): fp32 weights,
    gradients, DDP's gradient buckets (a second copy of the gradients) and AdamW's two moments, all
    unsharded, plus the activations."""
    P = counts['total']
    row = dict(weights=4 * P, grads=4 * P, buckets=4 * P, optim=8 * P, gathered=0,
               acts=_acts(block_act, head_act, num_layers, checkpointing))
    row['total'] = sum(row.values())
    return row


def fsdp_memory(counts, block_act, head_act, num_layers, shard: int, param_bytes: int = 2,
                checkpointing: bool = True) -> dict:
    """Per-rank bytes of FSDP FULL_SHARD over ``shard`` ranks with fp32 AdamW: fp32 master weights,
    gradients and moments sharded; unsharded in ``param_bytes`` (2: bf16 mixed precision, 4: fp32)
    the root unit (embeddings, pyramid, heads: parameters + gradients) and two block units (current +
    prefetched); plus the activations."""
    P = counts['total']
    row = dict(weights=4 * P / shard, grads=4 * P / shard, buckets=0, optim=8 * P / shard,
               gathered=2 * counts['root_unit'] * param_bytes + 2 * 2 * counts['largest_block'] * param_bytes,
               acts=_acts(block_act, head_act, num_layers, checkpointing))
    row['total'] = sum(row.values())
    return row


def plan(counts, block_act, head_act, flops_fwd, backbone_flops_fwd, num_layers, world_sizes: Sequence[int],
         gpu_mem_gib=80.0, peak_tflops=989.0, mfu=0.4, batch_per_gpu=2, intra_bw=300e9, inter_bw=50e9,
         gpus_per_node=8, param_bytes: int = 2) -> list:
    """Per-GPU memory (GiB) and step time for FSDP FULL_SHARD / HYBRID_SHARD + activation checkpointing
    (``param_bytes`` 2: bf16 mixed precision), and plain DDP for comparison."""
    rows = []
    P = counts['total']
    cases = [(n, 'FULL_SHARD') for n in world_sizes] + \
        [(n, 'HYBRID_SHARD') for n in world_sizes if n > gpus_per_node] + [(min(world_sizes), 'DDP')]
    for n, strategy in cases:
        shard = n if strategy == 'FULL_SHARD' else (gpus_per_node if strategy == 'HYBRID_SHARD' else 1)
        if strategy == 'DDP':
            mem = ddp_memory(counts, block_act, head_act, num_layers)
        else:  # HYBRID: shard in a node, replicate across
            mem = fsdp_memory(counts, block_act, head_act, num_layers, shard, param_bytes)
        acts_no_cp = _acts(block_act, head_act, num_layers, False)
        # compute: forward + backward (2x) + recomputed backbone forward, per GPU
        step_flops = 3 * flops_fwd + (0 if strategy == 'DDP' else backbone_flops_fwd)
        compute_s = step_flops / (peak_tflops * 1e12 * mfu)
        # all-gather params in forward and backward, reduce-scatter fp32 grads, over the shard group;
        # DDP: an all-reduce of the fp32 gradients
        shard_bw = intra_bw if max(shard, n if strategy == 'DDP' else shard) <= gpus_per_node else inter_bw
        if strategy == 'DDP':
            comm_s = 2 * 4 * P * (n - 1) / n / shard_bw
        else:
            comm_s = (2 * param_bytes + 4) * P * (shard - 1) / shard / shard_bw
        if strategy == 'HYBRID_SHARD':  # plus an all-reduce of each GPU's fp32 gradient shard across nodes
            nodes = n // gpus_per_node
            comm_s += 2 * 4 * (P / shard) * (nodes - 1) / nodes / inter_bw
        total = mem['total'] / GiB
        rows.append(dict(gpus=n, strategy=strategy, weights=mem['weights'] / GiB, grads=(mem['grads'] + mem['buckets']) / GiB,
                         optim=mem['optim'] / GiB, gathered=mem['gathered'] / GiB, acts=mem['acts'] / GiB,
                         acts_no_cp=acts_no_cp / GiB, total=total, fits=total < 0.9 * gpu_mem_gib,
                         compute_s=compute_s, comm_s=comm_s, step_s=max(compute_s, comm_s),
                         imgs_per_s=n * batch_per_gpu / max(compute_s, comm_s)))
    return rows


def measure_for_config(config: str, img: int = 504, batch: int = 2, dtype=torch.bfloat16) -> dict:
    """Everything the plan needs, from a config: parameter counts (model on ``meta``), activation bytes
    (one real-width block run in ``dtype`` on the CPU; pyramid + heads on ``meta``) and FLOPs."""
    from torch.utils.flop_counter import FlopCounterMode
    from .config import build_model, load_config
    cfg = load_config(config)
    model = build_model(cfg, device='meta')
    counts = param_counts(model)
    bb = model.backbone
    tokens = (img // bb.patch_size) ** 2 + 1
    blk = measure_block_activations(bb.embed_dims, bb.arch['num_heads'], bb.arch['feedforward_channels'], tokens,
                                    batch, dtype)
    flops = count_flops(model, img, batch)
    with FlopCounterMode(display=False) as fc, torch.no_grad():
        bb(torch.randn(batch, 3, img, img, device='meta'))
    heads = measure_head_activations(model, img, batch, dtype)
    return dict(counts=counts, block_act=blk, head_act=heads, flops=flops, backbone_flops=fc.get_total_flops(),
                num_layers=bb.num_layers, tokens=tokens)
