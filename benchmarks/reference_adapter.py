"""InternVL-MMDetSeg's ``InternViTAdapter`` forward, written once from a flat state dict with explicit
operations: the parity tests' independent re-computation of :class:`perception.models.InternViTAdapter`.

Written from the fork's ``vit_adapter.py``, ``adapter_modules.py`` and ``ms_deform_attn.py``, not from
perception's modules: the deformable attention gathers the four neighbours of every sampling point by
hand (bilinear, ``align_corners=False``, zero outside the map) instead of ``grid_sample``; LayerNorms,
softmax, GELU and linears are :mod:`benchmarks.reference`'s explicit ones; the convolutions are
``F.conv2d`` / ``F.conv_transpose2d`` on the raw weights; the ViT blocks are :func:`benchmarks.reference.block`.
"""
import torch
import torch.nn.functional as F

from . import reference as ref

INTERACTION_EPS = 1e-5  # nn.LayerNorm's default: the fork passes norm_layer=nn.LayerNorm
MAP_EPS = 1e-6          # the fork's channels-first LayerNorm


def ln2d(x, w, b, eps=MAP_EPS):
    """The fork's channels-first LayerNorm (biased variance over channels)."""
    u = x.mean(1, keepdim=True)
    s = (x - u).pow(2).mean(1, keepdim=True)
    return (x - u) / torch.sqrt(s + eps) * w[:, None, None] + b[:, None, None]


def reference_points(shapes, device=None):
    """The fork's ``get_reference_points``: cell centres via ``linspace(0.5, n - 0.5, n) / n``, (x, y)."""
    pts = []
    for h, w in shapes:
        ry, rx = torch.meshgrid(torch.linspace(0.5, h - 0.5, h, device=device),
                                torch.linspace(0.5, w - 0.5, w, device=device), indexing='ij')
        pts.append(torch.stack((rx.reshape(-1) / w, ry.reshape(-1) / h), -1))
    return torch.cat(pts, 0)[None, :, None]


def bilinear_gather(v, h, w, loc):
    """Sample ``v [B, M, h*w, D]`` at ``loc [B, M, Q, P, 2]`` ((x, y) in [0, 1]): the four neighbours of
    each point, weighted bilinearly, zero outside the map. Returns ``[B, M, Q, P, D]``."""
    B, M, Q, P, _ = loc.shape
    D = v.shape[-1]
    px = loc[..., 0] * w - 0.5  # align_corners=False: pixel centres at integer + 0.5 of [0, w]
    py = loc[..., 1] * h - 0.5
    x0, y0 = torch.floor(px), torch.floor(py)
    out = v.new_zeros(B, M, Q, P, D)
    for yi in (y0, y0 + 1):
        for xi in (x0, x0 + 1):
            wgt = (1 - (px - xi).abs()) * (1 - (py - yi).abs())
            inside = (xi >= 0) & (xi <= w - 1) & (yi >= 0) & (yi <= h - 1)
            idx = (yi.clamp(0, h - 1) * w + xi.clamp(0, w - 1)).long().reshape(B, M, Q * P, 1).expand(-1, -1, -1, D)
            g = torch.gather(v, 2, idx).reshape(B, M, Q, P, D)
            out = out + g * (wgt * inside)[..., None]
    return out


def deform_core(value, shapes, loc, weights):
    """value ``[B, S, M, D]``, loc ``[B, Q, M, L, P, 2]``, weights ``[B, Q, M, L, P]`` -> ``[B, Q, M*D]``."""
    B, _, M, D = value.shape
    Q = loc.shape[1]
    out = value.new_zeros(B, M, Q, D)
    start = 0
    for lvl, (h, w) in enumerate(shapes):
        v = value[:, start:start + h * w].permute(0, 2, 1, 3)  # [B, M, hw, D]
        start += h * w
        s = bilinear_gather(v, h, w, loc[:, :, :, lvl].permute(0, 2, 1, 3, 4))  # [B, M, Q, P, D]
        a = weights[:, :, :, lvl].permute(0, 2, 1, 3)  # [B, M, Q, P]
        out = out + (s * a[..., None]).sum(3)
    return out.permute(0, 2, 1, 3).reshape(B, Q, M * D)


def ms_deform_attn(sd, p, query, ref_pts, feat, shapes, heads, points):
    """The fork's ``MSDeformAttn.forward`` (2-d reference points, no padding mask); ``p`` ends with '.'."""
    B, Q, _ = query.shape
    L = len(shapes)
    value = ref.linear(feat, sd[p + 'value_proj.weight'], sd[p + 'value_proj.bias'])
    value = value.view(B, feat.shape[1], heads, -1)
    off = ref.linear(query, sd[p + 'sampling_offsets.weight'], sd[p + 'sampling_offsets.bias'])
    off = off.view(B, Q, heads, L, points, 2)
    aw = ref.linear(query, sd[p + 'attention_weights.weight'], sd[p + 'attention_weights.bias'])
    aw = ref.softmax(aw.view(B, Q, heads, L * points)).view(B, Q, heads, L, points)
    norm = torch.tensor([[w, h] for h, w in shapes], dtype=query.dtype)
    loc = ref_pts[:, :, None, :, None, :] + off / norm[None, None, None, :, None, :]
    out = deform_core(value, shapes, loc, aw)
    return ref.linear(out, sd[p + 'output_proj.weight'], sd[p + 'output_proj.bias'])


def ln(sd, key, x, eps=INTERACTION_EPS):
    return ref.layer_norm(x, sd[key + '.weight'], sd[key + '.bias'], eps)


def conv_ffn(sd, p, x, levels):
    x = ref.linear(x, sd[p + 'fc1.weight'], sd[p + 'fc1.bias'])
    B, _, C = x.shape
    parts, start = [], 0
    for h, w in levels:
        m = x[:, start:start + h * w].transpose(1, 2).reshape(B, C, h, w)
        start += h * w
        m = F.conv2d(m, sd[p + 'dwconv.dwconv.weight'], sd[p + 'dwconv.dwconv.bias'], padding=1, groups=C)
        parts.append(m.flatten(2).transpose(1, 2))
    return ref.linear(ref.gelu_erf(torch.cat(parts, 1)), sd[p + 'fc2.weight'], sd[p + 'fc2.bias'])


def extractor(sd, p, c, x, c_pts, grid, levels, heads, points):
    c = c + ms_deform_attn(sd, p + 'attn.', ln(sd, p + 'query_norm', c), c_pts, ln(sd, p + 'feat_norm', x),
                           [grid], heads, points)
    if p + 'ffn.fc1.weight' in sd:
        c = c + conv_ffn(sd, p + 'ffn.', ln(sd, p + 'ffn_norm', c), levels)
    return c


def spm(sd, img):
    def cnr(x, conv, norm, stride):
        x = F.conv2d(x, sd[f'spm.{conv}.weight'], stride=stride, padding=1)
        return ln2d(x, sd[f'spm.{norm}.weight'], sd[f'spm.{norm}.bias']).clamp_min(0)
    c1 = cnr(cnr(cnr(img, 'stem.0', 'stem.1', 2), 'stem.3', 'stem.4', 1), 'stem.6', 'stem.7', 1)
    c1 = F.max_pool2d(c1, 3, 2, 1)
    c2 = cnr(c1, 'conv2.0', 'conv2.1', 2)
    c3 = cnr(c2, 'conv3.0', 'conv3.1', 2)
    c4 = cnr(c3, 'conv4.0', 'conv4.1', 2)
    maps = [F.conv2d(c, sd[f'spm.fc{i}.weight'], sd[f'spm.fc{i}.bias']) for i, c in enumerate((c1, c2, c3, c4), 1)]
    return maps[0], [m.flatten(2).transpose(1, 2) for m in maps[1:]]


def forward(sd, img, arch, interaction_indexes, deform_heads, n_points=4, add_vit_feature=True,
            use_final_norm=True):
    """The adapter's four maps for ``img`` (sides multiples of 32, patch 16)."""
    B, _, h, w = img.shape
    H, W = h // 16, w // 16
    levels = [(h // 8, w // 8), (h // 16, w // 16), (h // 32, w // 32)]
    vit_pts, c_pts = reference_points([(H, W)]), reference_points(levels)
    c1, (c2, c3, c4) = spm(sd, img)
    le = sd['level_embed']
    c = torch.cat([c2 + le[0], c3 + le[1], c4 + le[2]], 1)
    pre = arch['img_size'] // arch['patch_size']
    # the ViT without its class token: embed with a dummy one and drop it (its position entry goes with it)
    x, _ = ref.embed(dict(sd, cls_token=torch.zeros(1, 1, sd['pos_embed'].shape[-1])), img, 16, (pre, pre))
    x = x[:, 1:]
    for i, (first, last) in enumerate(interaction_indexes):
        p = f'interactions.{i}.'
        inj = p + 'injector.'
        attn = ms_deform_attn(sd, inj + 'attn.', ln(sd, inj + 'query_norm', x), vit_pts,
                              ln(sd, inj + 'feat_norm', c), levels, deform_heads, n_points)
        x = x + sd[inj + 'gamma'] * attn
        for j in range(first, last + 1):
            x = ref.block(sd, f'blocks.{j}.', x, arch['num_heads'], arch['norm_type'], arch['qk_normalization'],
                          arch.get('norm_eps', 1e-6))
        names = [p + 'extractor.'] + [f'{p}extra_extractors.{k}.' for k in range(2)
                                      if f'{p}extra_extractors.{k}.query_norm.weight' in sd]
        for e in names:
            c = extractor(sd, e, c, x, c_pts, (H, W), levels, deform_heads, n_points)
    C = x.shape[-1]
    n2, n3 = levels[0][0] * levels[0][1], levels[1][0] * levels[1][1]
    c2 = c[:, :n2].transpose(1, 2).reshape(B, C, *levels[0])
    c3 = c[:, n2:n2 + n3].transpose(1, 2).reshape(B, C, *levels[1])
    c4 = c[:, n2 + n3:].transpose(1, 2).reshape(B, C, *levels[2])
    c1 = F.conv_transpose2d(c2, sd['up.weight'], sd['up.bias'], stride=2) + c1
    outs = [c1, c2, c3, c4]
    if add_vit_feature:
        x3 = x.transpose(1, 2).reshape(B, C, H, W)
        vit = [F.interpolate(x3, scale_factor=s, mode='bilinear', align_corners=False) for s in (4, 2)]
        vit += [x3, F.interpolate(x3, scale_factor=0.5, mode='bilinear', align_corners=False)]
        outs = [o + v for o, v in zip(outs, vit)]
    if use_final_norm:
        outs = [ln2d(o, sd[f'norm{i}.weight'], sd[f'norm{i}.bias']) for i, o in enumerate(outs, 1)]
    return outs
