"""An independent re-computation of the published InternViT formula from a flat state dict.

Written with explicit tensor operations only (no perception modules, no nn.functional attention,
no F.gelu / F.layer_norm): if the project's modules drift from the formula, the tests catch it.
"""
import math

import torch


def rms_norm(x, w, eps=1e-6):
    xf = x.float()
    return w * (xf / torch.sqrt((xf * xf).mean(-1, keepdim=True) + eps)).to(x.dtype)


def layer_norm(x, w, b, eps=1e-6):
    mu = x.mean(-1, keepdim=True)
    var = ((x - mu) ** 2).mean(-1, keepdim=True)
    return (x - mu) / torch.sqrt(var + eps) * w + b


def gelu_erf(x):
    return 0.5 * x * (1 + torch.erf(x / math.sqrt(2)))


def softmax(x):
    e = torch.exp(x - x.max(-1, keepdim=True).values)
    return e / e.sum(-1, keepdim=True)


def norm(sd, key, x, norm_type, eps):
    if norm_type == 'rms_norm':
        return rms_norm(x, sd[key + '.weight'], eps)
    return layer_norm(x, sd[key + '.weight'], sd[key + '.bias'], eps)


def block(sd, p, x, heads, norm_type='rms_norm', qk_norm=True, eps=1e-6):
    B, N, C = x.shape
    D = C // heads
    h = norm(sd, p + 'norm1', x, norm_type, eps)
    qkv = h @ sd[p + 'attn.qkv.weight'].T
    if p + 'attn.qkv.bias' in sd:
        qkv = qkv + sd[p + 'attn.qkv.bias']
    q, k, v = qkv[..., :C], qkv[..., C:2 * C], qkv[..., 2 * C:]
    if qk_norm:  # over the FULL width, before the head split
        q = rms_norm(q, sd[p + 'attn.q_norm.weight'], eps)
        k = rms_norm(k, sd[p + 'attn.k_norm.weight'], eps)
    q, k, v = (t.reshape(B, N, heads, D).permute(0, 2, 1, 3) for t in (q, k, v))
    a = softmax((q @ k.transpose(-1, -2)) / math.sqrt(D))
    o = (a @ v).permute(0, 2, 1, 3).reshape(B, N, C)
    o = o @ sd[p + 'attn.proj.weight'].T + sd[p + 'attn.proj.bias']
    x = x + sd[p + 'ls1.gamma'] * o
    h = norm(sd, p + 'norm2', x, norm_type, eps)
    h = gelu_erf(h @ sd[p + 'mlp.fc1.weight'].T + sd[p + 'mlp.fc1.bias'])
    h = h @ sd[p + 'mlp.fc2.weight'].T + sd[p + 'mlp.fc2.bias']
    return x + sd[p + 'ls2.gamma'] * h


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
