"""InternVL-C / InternVL-G as the release computes them, written from a flat state dict in the release's
own key names (the ``InternVL-14B-224px`` layout: ``vision_model.*``, ``qllama.model.*``, ...), in
explicit tensor operations mirroring ``modeling_qllama.py`` / ``modeling_internvl.py``: the release's
additive masks (``finfo.min``, summed, clamped after adding), softmax in float32, rotary cos/sin
computed in float32 and cast to the activations' dtype, RMSNorm as ``LlamaRMSNorm``, attention pooling
as ``AttentionPoolingBlock``. Imports nothing of perception: the tests' independent re-computation.

The ViT is :func:`benchmarks.reference.forward` (the one reference InternViT formula) on the tower's
keys renamed here to the original layout.
"""
import math

import torch

from . import reference as vit_ref


def llama_rms_norm(x, w, eps=1e-6):
    """``LlamaRMSNorm``: variance in float32, ``x * rsqrt`` (promoted), cast to a half weight's dtype."""
    variance = x.to(torch.float32).pow(2).mean(-1, keepdim=True)
    h = x * torch.rsqrt(variance + eps)
    if w.dtype in (torch.float16, torch.bfloat16):
        h = h.to(w.dtype)
    return w * h


def softmax_fp32(x):
    x = x.float()
    e = torch.exp(x - x.max(-1, keepdim=True).values)
    return e / e.sum(-1, keepdim=True)


def rotate_half(x):
    x1, x2 = x[..., :x.shape[-1] // 2], x[..., x.shape[-1] // 2:]
    return torch.cat((-x2, x1), dim=-1)


def rotary(q, k, base=10000.0):
    """``FixedLlamaRotaryEmbedding`` + ``apply_rotary_pos_emb`` for positions 0..N-1, ``[B, H, N, D]``."""
    D, N = q.shape[-1], q.shape[-2]
    inv_freq = 1.0 / (base ** (torch.arange(0, D, 2).float() / D))
    t = torch.arange(N, dtype=torch.float32)
    freqs = torch.einsum('i,j->ij', t, inv_freq)
    emb = torch.cat((freqs, freqs), dim=-1)
    cos, sin = emb.cos().to(q.dtype), emb.sin().to(q.dtype)
    return q * cos + rotate_half(q) * sin, k * cos + rotate_half(k) * sin


def text_mask(ids, dtype):
    """``_expand_mask(ids > 0) + _make_causal_mask``: ``[B, 1, L, L]`` additive, in ``dtype``."""
    B, L = ids.shape
    lo = torch.finfo(dtype).min
    expanded = (ids > 0)[:, None, None, :].expand(B, 1, L, L).to(dtype)
    inverted = 1.0 - expanded
    pad = inverted.masked_fill(inverted.to(torch.bool), lo)
    causal = torch.full((L, L), lo)
    cond = torch.arange(L)
    causal.masked_fill_(cond < (cond + 1).view(L, 1), 0)
    return pad + causal.to(dtype)[None, None]


def heads(x, h):
    B, N, C = x.shape
    return x.view(B, N, h, C // h).transpose(1, 2)


def attend(q, k, v, mask=None):
    w = (q @ k.transpose(2, 3)) / math.sqrt(q.shape[-1])
    if mask is not None:
        w = w + mask
        w = torch.max(w, torch.tensor(torch.finfo(w.dtype).min))
    a = softmax_fp32(w).to(q.dtype)
    B, H, N, D = q.shape
    return (a @ v).transpose(1, 2).reshape(B, N, H * D)


def decoder_layer(sd, i, x, cfg, mask, vision):
    p = f'qllama.model.layers.{i}.'
    eps, H = cfg['rms_norm_eps'], cfg['num_heads']
    h = llama_rms_norm(x, sd[p + 'input_layernorm.weight'], eps)
    q, k = rotary(heads(h @ sd[p + 'self_attn.q_proj.weight'].T, H), heads(h @ sd[p + 'self_attn.k_proj.weight'].T, H))
    v = heads(h @ sd[p + 'self_attn.v_proj.weight'].T, H)
    x = x + attend(q, k, v, mask) @ sd[p + 'self_attn.o_proj.weight'].T
    nq = cfg['num_query_token']
    if p + 'cross_attn.q_proj.weight' in sd and vision is not None and x.shape[1] >= nq:
        qf, rest = x[:, :nq], x[:, nq:]
        hq = llama_rms_norm(qf, sd[p + 'cross_attn.norm1.weight'], eps)
        hv = llama_rms_norm(vision, sd[p + 'cross_attn.norm2.weight'], eps)
        o = attend(heads(hq @ sd[p + 'cross_attn.q_proj.weight'].T, H),
                   heads(hv @ sd[p + 'cross_attn.k_proj.weight'].T, H),
                   heads(hv @ sd[p + 'cross_attn.v_proj.weight'].T, H))
        x = torch.cat([qf + o @ sd[p + 'cross_attn.o_proj.weight'].T, rest], dim=1)
    h = llama_rms_norm(x, sd[p + 'post_attention_layernorm.weight'], eps)
    g = h @ sd[p + 'mlp.gate_proj.weight'].T
    h = (g * torch.sigmoid(g)) * (h @ sd[p + 'mlp.up_proj.weight'].T)
    return x + h @ sd[p + 'mlp.down_proj.weight'].T


def qllama(sd, x, cfg, mask=None, vision=None):
    for i in range(cfg['num_layers']):
        x = decoder_layer(sd, i, x, cfg, mask, vision)
    return llama_rms_norm(x, sd['qllama.model.norm.weight'], cfg['rms_norm_eps'])


def attention_pool(sd, p, x, num_heads):
    """``AttentionPoolingBlock``: the mean token attends to all tokens; LayerNorms eps 1e-5."""
    x_q = x.mean(1, keepdim=True)

    def ln(t, n):
        return vit_ref.layer_norm(t, sd[f'{p}{n}.weight'], sd[f'{p}{n}.bias'], 1e-5)
    c = p + 'cross_attn.'
    q = heads(ln(x_q, 'norm1_q') @ sd[c + 'q.weight'].T + sd[c + 'q_bias'], num_heads)
    k = heads(ln(x, 'norm1_k') @ sd[c + 'k.weight'].T + sd[c + 'k_bias'], num_heads)
    v = heads(ln(x, 'norm1_v') @ sd[c + 'v.weight'].T + sd[c + 'v_bias'], num_heads)
    a = vit_ref.softmax((q * q.shape[-1] ** -0.5) @ k.transpose(-2, -1))
    o = (a @ v).transpose(1, 2).reshape(x.shape[0], 1, -1)
    return (o @ sd[c + 'proj.weight'].T + sd[c + 'proj.bias']).squeeze(1)


def vit_state(sd):
    """The ``vision_model.*`` keys in the original InternViT layout (``benchmarks.reference``'s names)."""
    names = {'embeddings.class_embedding': 'cls_token', 'embeddings.position_embedding': 'pos_embed',
             'embeddings.patch_embedding.weight': 'patch_embed.proj.weight',
             'embeddings.patch_embedding.bias': 'patch_embed.proj.bias'}
    out = {}
    for k, v in sd.items():
        if not k.startswith('vision_model.'):
            continue
        k = k[len('vision_model.'):]
        if k in names:
            out[names[k]] = v
            continue
        k = k.replace('encoder.layers.', 'blocks.')
        out[k + '.gamma' if k.endswith(('.ls1', '.ls2')) else k] = v
    return out


def vision_tokens(sd, pixel_values, vision_arch):
    outs, _ = vit_ref.forward(vit_state(sd), pixel_values, vision_arch)
    return outs[-1]


def encode_image(sd, pixel_values, mode, cfg):
    """``InternVLModel.encode_image``."""
    tokens = vision_tokens(sd, pixel_values, cfg['vision'])
    c = attention_pool(sd, 'clip_projector.', tokens, cfg['attn_pool_num_heads'])
    if mode == 'InternVL-C':
        return c
    queries = sd['query_tokens'].repeat(tokens.shape[0], 1, 1)
    g = attention_pool(sd, 'clip_projector2.', qllama(sd, queries, cfg, None, tokens), cfg['attn_pool_num_heads'])
    return g / g.norm(dim=1, keepdim=True) + c / c.norm(dim=1, keepdim=True)


def encode_text(sd, ids, cfg):
    """``InternVLModel.encode_text``: the hidden state at ``(ids > 0).sum(1) - 1`` times ``text_projection``."""
    emb = sd['qllama.model.embed_tokens.weight'][ids]
    hidden = qllama(sd, emb, cfg, text_mask(ids, emb.dtype))
    last = hidden[torch.arange(hidden.shape[0]), (ids > 0).sum(1) - 1]
    return last @ sd['text_projection']
