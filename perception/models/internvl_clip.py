"""InternVL-C and InternVL-G: InternViT aligned with QLLaMA, for zero-shot classification and retrieval.

The vision tower is the project's InternViT (:class:`~perception.layers.vision_transformer.InternVisionTransformer`,
one forward path): its last block's tokens (class token + patches, no final norm) feed

* InternVL-C: ``clip_projector`` (attention pooling over all tokens) -> the image embedding;
* InternVL-G: the learnable ``query_tokens`` through QLLaMA, bidirectional, cross-attending the ViT
  tokens, pooled by ``clip_projector2``; the embedding is the sum of the normalised C embedding and
  the normalised query embedding.

Text (both modes): QLLaMA on the token ids alone, causal, keys with id 0 masked; the hidden state at
position ``(ids > 0).sum(1) - 1`` (the ``</s>`` of a right-padded row) times ``text_projection``.
Every embedding is returned unnormalised (except G's, a sum of two unit vectors), in float32, as the
release's ``encode_image`` / ``encode_text`` compute them.

A model holds only the ``parts`` it was built with, so the 14B runs in phases within 24 GiB:
``'text'`` (token embeddings, QLLaMA without cross-attention, ``text_projection``), ``'vision'`` (the
ViT and ``clip_projector``) and ``'queries'`` (InternVL-G: ``query_tokens``, QLLaMA's layers with their
cross-attention, ``clip_projector`` and ``clip_projector2``). Images can be run as ViT tokens first
(:meth:`InternVLCLIP.vision_tokens`) and embedded later (:meth:`InternVLCLIP.encode_image_tokens`).
"""
from typing import Iterable, Tuple

import torch
from torch import nn

from ..layers.attention_pool import AttentionPool
from ..layers.qllama import QLLaMA
from ..layers.vision_transformer import InternVisionTransformer, parse_arch

PARTS = ('text', 'vision', 'queries')
MODES = ('InternVL-C', 'InternVL-G')
CONFIG_KEYS = ('vision', 'vocab_size', 'hidden_size', 'num_layers', 'num_heads', 'intermediate_size',
               'rms_norm_eps', 'cross_attention_frequency', 'num_query_token', 'clip_embed_dim',
               'attn_pool_num_heads')
#: InternVL-14B-224px: InternViT-6B (224 px) + QLLaMA (LLaMA-7B shape, 49954 tokens)
CONFIG_14B = dict(vision=parse_arch('6b'), vocab_size=49954, hidden_size=4096, num_layers=32, num_heads=32,
                  intermediate_size=11008, rms_norm_eps=1e-6, cross_attention_frequency=2, num_query_token=96,
                  clip_embed_dim=768, attn_pool_num_heads=16)


def check_parts(parts: Iterable[str]) -> Tuple[str, ...]:
    parts = tuple(parts)
    bad = [p for p in parts if p not in PARTS]
    if bad or not parts:
        raise ValueError(f'parts must be a non-empty selection of {PARTS}, got {parts!r}')
    return tuple(p for p in PARTS if p in parts)


def check_mode(mode: str) -> str:
    if mode not in MODES:
        raise ValueError(f'mode must be one of {MODES}, got {mode!r}')
    return mode


class InternVLCLIP(nn.Module):
    """InternVL-C / -G embeddings. ``config``: the keys of :data:`CONFIG_KEYS` (``vision`` an InternViT
    arch dict or preset name); ``parts``: what to build (see the module docstring)."""

    def __init__(self, config: dict = CONFIG_14B, parts: Iterable[str] = PARTS, attn_backend: str = 'auto'):
        super().__init__()
        missing = [k for k in CONFIG_KEYS if k not in config]
        if missing:
            raise ValueError(f'InternVLCLIP config lacks {missing} (needs {list(CONFIG_KEYS)})')
        self.config = dict((k, config[k]) for k in CONFIG_KEYS)
        self.config['vision'] = arch = parse_arch(config['vision'])
        self.parts = check_parts(parts)
        c = self.config
        text, vision, queries = (p in self.parts for p in PARTS)
        self.vision = InternVisionTransformer(arch, attn_backend=attn_backend) if vision else None
        self.qllama = QLLaMA(c['vocab_size'], c['hidden_size'], c['num_layers'], c['num_heads'],
                             c['intermediate_size'], c['rms_norm_eps'], c['cross_attention_frequency'],
                             arch['embed_dims'], c['num_query_token'], with_embeddings=text,
                             with_cross_attention=queries) if (text or queries) else None
        self.text_projection = nn.Parameter(torch.zeros(c['hidden_size'], c['clip_embed_dim'])) if text else None
        self.query_tokens = nn.Parameter(torch.zeros(1, c['num_query_token'], c['hidden_size'])) if queries else None
        self.clip_projector = AttentionPool(arch['embed_dims'], c['attn_pool_num_heads'],
                                            c['clip_embed_dim']) if (vision or queries) else None
        self.clip_projector2 = AttentionPool(c['hidden_size'], c['attn_pool_num_heads'],
                                             c['clip_embed_dim']) if queries else None
        self.logit_scale = nn.Parameter(torch.zeros(()))

    def _need(self, part: str, what: str):
        if part not in self.parts:
            raise RuntimeError(f'{what} needs the {part!r} part, but this model was loaded with parts={self.parts}: '
                               f"load it with parts including {part!r}")

    # ----------------------------------------------------------------------------- text
    def encode_text(self, input_ids: torch.Tensor) -> torch.Tensor:
        """``[N, L]`` token ids (right-padded with 0) -> unnormalised text embeddings ``[N, clip_embed_dim]``."""
        self._need('text', 'encode_text')
        if not isinstance(input_ids, torch.Tensor) or input_ids.ndim != 2 or input_ids.is_floating_point():
            raise ValueError('encode_text expects a 2-d integer tensor of token ids [N, L], got '
                             f'{getattr(input_ids, "shape", type(input_ids).__name__)}')
        vocab = self.config['vocab_size']
        if input_ids.numel() and (int(input_ids.min()) < 0 or int(input_ids.max()) >= vocab):
            raise ValueError(f'token ids must lie in [0, {vocab}), got '
                             f'[{int(input_ids.min())}, {int(input_ids.max())}]')
        valid = (input_ids > 0).sum(1)
        if input_ids.numel() and int(valid.min()) == 0:
            raise ValueError(f'row {int((valid == 0).nonzero()[0])} of the token ids has no token > 0 (only padding)')
        ids = input_ids.to(self.text_projection.device).long()
        hidden = self.qllama.forward_text(ids)
        last = hidden[torch.arange(hidden.shape[0], device=hidden.device), valid.to(hidden.device) - 1]
        return (last @ self.text_projection).float()

    # ----------------------------------------------------------------------------- images
    def vision_tokens(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """``[B, 3, H, W]`` normalised pixels -> the ViT's last-block tokens ``[B, 1 + h*w, width]``
        in the weights' dtype (what both image heads read; cache them to run InternVL-G in phases)."""
        self._need('vision', 'vision_tokens')
        w = self.vision.patch_embed.proj.weight
        return self.vision(pixel_values.to(device=w.device, dtype=w.dtype))

    def encode_image_tokens(self, tokens: torch.Tensor, mode: str = 'InternVL-C') -> torch.Tensor:
        """The image embedding ``[B, clip_embed_dim]`` from :meth:`vision_tokens`' output."""
        check_mode(mode)
        if self.clip_projector is None:
            self._need('vision', 'encode_image_tokens')
        ref = self.clip_projector.cross_attn.proj.weight
        tokens = tokens.to(device=ref.device, dtype=ref.dtype)
        c_embed = self.clip_projector(tokens).float()
        if mode == 'InternVL-C':
            return c_embed
        self._need('queries', "mode='InternVL-G'")
        queries = self.query_tokens.expand(tokens.shape[0], -1, -1)
        g_embed = self.clip_projector2(self.qllama.forward_queries(queries, tokens)).float()
        return c_embed / c_embed.norm(dim=1, keepdim=True) + g_embed / g_embed.norm(dim=1, keepdim=True)

    def encode_image(self, pixel_values: torch.Tensor, mode: str = 'InternVL-C') -> torch.Tensor:
        """``[B, 3, H, W]`` normalised pixels -> the image embedding ``[B, clip_embed_dim]`` of ``mode``."""
        check_mode(mode)
        if mode == 'InternVL-G':
            self._need('queries', "mode='InternVL-G'")
        return self.encode_image_tokens(self.vision_tokens(pixel_values), mode)

    def extra_repr(self) -> str:
        return f'parts={self.parts}'
