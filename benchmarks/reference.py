"""InternViT's published formula, written once from a flat state dict, with two sets of primitives.

* ``EXPLICIT`` (the default): explicit tensor operations only (no perception modules, no
  ``nn.functional`` attention, linear, GELU or norm): the tests' independent re-computation; if the
  project's modules drift from the formula, the tests catch it.
* ``OFFICIAL``: the kernels InternVL's release calls (``F.linear``, ``Tensor.softmax``, ``F.gelu``,
  ``F.layer_norm``), in its data layout (q/k normalised through a transpose-flatten of the split heads,
  ``softmax((q * scale) k^T)`` in the activation dtype): :class:`OfficialStyleBlock`, the baseline of
  the compile comparison.

RMSNorm is the same function in both: the release's ``InternRMSNorm`` is itself written in explicit
operations (fp32 inside, cast back, then the weight).
"""
import math
from typing import Callable, NamedTuple

import torch
import torch.nn.functional as F


def rms_norm(x, w, eps=1e-6):
    xf = x.float()
    return w * (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)).to(x.dtype)


def layer_norm(x, w, b, eps=1e-6):
    mu = x.mean(-1, keepdim=True)
    var = ((x - mu) ** 2).mean(-1, keepdim=True)
    return (x - mu) / torch.sqrt(var + eps) * w + b


def gelu_erf(x):
    return 0.5 * x * (1 + torch.erf(x / math.sqrt(2)))


def softmax(x):
    e = torch.exp(x - x.max(-1, keepdim=True).values)
    return e / e.sum(-1, keepdim=True)


def linear(x, w, b=None):
    y = x @ w.T
    return y if b is None else y + b


class Ops(NamedTuple):
    """The primitives the formula is computed with."""
    linear: Callable
    softmax: Callable
    gelu: Callable
    layer_norm: Callable


EXPLICIT = Ops(linear, softmax, gelu_erf, layer_norm)
OFFICIAL = Ops(F.linear, lambda x: x.softmax(dim=-1), F.gelu,
               lambda x, w, b, eps: F.layer_norm(x, x.shape[-1:], w, b, eps))


def norm(sd, key, x, norm_type, eps, ops: Ops = EXPLICIT):
    if norm_type == 'rms_norm':
        return rms_norm(x, sd[key + '.weight'], eps)
    return ops.layer_norm(x, sd[key + '.weight'], sd[key + '.bias'], eps)


def attention(sd, p, x, heads, qk_norm=True, eps=1e-6, ops: Ops = EXPLICIT):
    B, N, C = x.shape
    D = C // heads
    qkv = ops.linear(x, sd[p + 'attn.qkv.weight'], sd.get(p + 'attn.qkv.bias'))
    q, k, v = qkv.reshape(B, N, 3, heads, D).permute(2, 0, 3, 1, 4).unbind(0)  # [B, heads, N, D] each
    if qk_norm:  # over the FULL width, before the head split
        q = rms_norm(q.transpose(1, 2).flatten(2, 3), sd[p + 'attn.q_norm.weight'], eps)
        k = rms_norm(k.transpose(1, 2).flatten(2, 3), sd[p + 'attn.k_norm.weight'], eps)
        q, k = (t.view(B, N, heads, D).transpose(1, 2) for t in (q, k))
    a = ops.softmax((q * D ** -0.5) @ k.transpose(-2, -1))
    o = (a @ v).transpose(1, 2).reshape(B, N, C)
    return ops.linear(o, sd[p + 'attn.proj.weight'], sd[p + 'attn.proj.bias'])


def block(sd, p, x, heads, norm_type='rms_norm', qk_norm=True, eps=1e-6, ops: Ops = EXPLICIT):
    """One encoder layer: ``x + ls1 * attn(norm1(x))``, then ``x + ls2 * mlp(norm2(x))``; ``p`` is the
    block's key prefix in ``sd`` (e.g. ``'blocks.0.'``)."""
    h = norm(sd, p + 'norm1', x, norm_type, eps, ops).to(x.dtype)
    x = x + attention(sd, p, h, heads, qk_norm, eps, ops) * sd[p + 'ls1.gamma']
    h = norm(sd, p + 'norm2', x, norm_type, eps, ops).to(x.dtype)
    h = ops.gelu(ops.linear(h, sd[p + 'mlp.fc1.weight'], sd[p + 'mlp.fc1.bias']))
    h = ops.linear(h, sd[p + 'mlp.fc2.weight'], sd[p + 'mlp.fc2.bias'])
    return x + h * sd[p + 'ls2.gamma']


def embed(sd, img, patch, pre_grid):
    """Patch embedding as an explicit unfold + matmul, plus the bicubic-resampled pos embed."""
    B, _, H, W = img.shape
    h, w = H // patch, W // patch
    pw = sd['patch_embed.proj.weight']
    C = pw.shape[0]
    cols = img.reshape(B, 3, h, patch, w, patch).permute(0, 2, 4, 1, 3, 5).reshape(B, h * w, -1)
    tok = cols @ pw.reshape(C, -1).T + sd['patch_embed.proj.bias']
    pe = sd['pos_embed']
    if (h, w) != pre_grid:
        grid = pe[:, 1:].reshape(1, pre_grid[0], pre_grid[1], C).permute(0, 3, 1, 2).float()
        grid = torch.nn.functional.interpolate(grid, size=(h, w), mode='bicubic', align_corners=False)
        pe = torch.cat([pe[:, :1], grid.permute(0, 2, 3, 1).reshape(1, h * w, C)], 1)
    x = torch.cat([sd['cls_token'].expand(B, -1, -1), tok], 1)
    return x + pe, (h, w)


def forward(sd, img, arch, upto=None):
    """Tokens after every block: list of [B, 1 + h*w, C]."""
    pre = arch['img_size'] // arch['patch_size']
    x, grid = embed(sd, img, arch['patch_size'], (pre, pre))
    outs = []
    n = arch['num_layers'] if upto is None else upto + 1
    for i in range(n):
        x = block(sd, f'blocks.{i}.', x, arch['num_heads'], arch['norm_type'],
                  arch['qk_normalization'], arch.get('norm_eps', 1e-6))
        outs.append(x)
    return outs, grid


class OfficialStyleBlock(torch.nn.Module):
    """InternVL's own encoder layer as its release runs it without flash attention (the baseline of
    the compile comparison): :func:`block` with the ``OFFICIAL`` primitives, RMSNorm casting to fp32 and
    back, everything else in the activation dtype. Loaded from a
    :class:`~perception.layers.block.Block` state dict."""

    def __init__(self, blk):
        super().__init__()
        self.heads = blk.attn.num_heads
        self.eps = blk.norm1.eps
        self.p = {k: v.detach() for k, v in blk.state_dict().items()}

    def forward(self, x):
        return block(self.p, '', x, self.heads, 'rms_norm', 'attn.q_norm.weight' in self.p, self.eps, OFFICIAL)
