"""The two released InternVL-C / InternVL-G checkpoint layouts, converted to one set of names.

Target names (``perception.models.InternVLCLIP``): ``vision.*`` (the InternViT layout of
:mod:`.formats`), ``qllama.{embed_tokens,layers.N.*,norm}.*``, ``query_tokens``, ``text_projection``,
``logit_scale``, ``clip_projector.*``, ``clip_projector2.*``. Sources:

* ``'internvl_hf'``: the Hugging Face ``InternVL-14B-224px`` folder (``vision_model.*`` in the HF
  InternViT layout, ``qllama.model.*``, ``qllama.lm_head.weight``, ``itm_head.*``, ...);
* ``'internvl_stage1'``: ``internvl_c_13b_224px.pth`` (the ViT in the original layout at the top level,
  the text tower as a plain transformers ``LlamaModel`` under ``transformer.*``, no queries).

``lm_head`` and ``itm_head`` are never used for embeddings: they are reported unused and never read.
Old transformers saved the rotary frequencies (``*.rotary_emb.inv_freq``); they carry no weights,
are checked against the formula the model computes, and are dropped. Values stay lazy.
"""
import re
from typing import Dict, List, Tuple

import torch

from ..layers.qllama import ROPE_BASE, rope_inv_freq
from ..layers.vision_transformer import parse_arch
from .errors import CheckpointError, list_keys
from .formats import convert_hf, strip_common_prefix
from .loader import arch_from_hf_config, infer_arch

CLIP_FORMATS = {
    'internvl_hf': 'InternVL-14B-224px, Hugging Face layout (vision_model + qllama)',
    'internvl_stage1': 'InternVL-C stage-1 PyTorch checkpoint (ViT + transformer.*)',
}
HEAD_KEYS = ('query_tokens', 'text_projection', 'logit_scale')
PROJECTORS = ('clip_projector.', 'clip_projector2.')
_VIT_TOP = ('cls_token', 'pos_embed', 'patch_embed.', 'blocks.')
_INV_FREQ = re.compile(r'^qllama\.layers\.\d+\.self_attn\.rotary_emb\.inv_freq$')
LLAMA_HEAD_DIM = 128  # LLaMA-7B and QLLaMA: 32 heads of 128; the tensors do not store the head count
ATTN_POOL_HEADS = 16  # the release's attn_pool_num_heads (not stored in the tensors)


def detect_clip_format(keys, path: str = '') -> str:
    """'internvl_hf' or 'internvl_stage1'; a checkpoint without the text tower is refused naming it."""
    ks = list(keys)

    def has(prefix):
        return any(k.startswith(prefix) for k in ks)
    if has('qllama.'):
        return 'internvl_hf'
    if has('transformer.'):
        return 'internvl_stage1'
    vit = has('vision_model.') or any(k.startswith(_VIT_TOP) for k in ks) or has('encoder.layers.')
    if vit:
        raise CheckpointError(
            f'{path}: holds an InternViT (vision tower) without the InternVL text tower: missing QLLaMA '
            "('qllama.model.*' in InternVL-14B-224px, 'transformer.*' in internvl_c_13b_224px.pth) and "
            "'text_projection'; InternVL-C / -G need the InternVL-14B-224px folder or internvl_c_13b_224px.pth")
    raise CheckpointError(f'{path}: not an InternVL-C / InternVL-G checkpoint (no qllama.* or transformer.* '
                          f'keys; found {list_keys(ks, 8)})')


def _check_inv_freq(key: str, lt, path: str):
    t = lt.load().float().reshape(-1)
    want = rope_inv_freq(2 * t.numel())
    if not torch.allclose(t, want, rtol=1e-2, atol=1e-6):
        raise CheckpointError(f'{path}: {key} is not the rotary frequency 1/{ROPE_BASE:g}^(2i/d) this model '
                              'computes (another rotary base or scaling): refused')
    lt.release()


def convert_internvl_clip(sd: dict, path: str = '') -> Tuple[dict, Dict[str, List[str]], str]:
    """``(state dict in InternVLCLIP names, unused groups, format)``; values are passed through lazily."""
    sd = strip_common_prefix(sd, 'module.')
    fmt = detect_clip_format(sd, path)
    out, unused = {}, {}
    if fmt == 'internvl_hf':
        vision = {k[len('vision_model.'):]: v for k, v in sd.items() if k.startswith('vision_model.')}
        for k, v in convert_hf(vision)[0].items():
            out['vision.' + k] = v
        for k, v in sd.items():
            if k.startswith('vision_model.'):
                continue
            if k.startswith('qllama.lm_head.'):
                unused.setdefault('qllama.lm_head (language-model head)', []).append(k)
            elif k.startswith('itm_head.'):
                unused.setdefault('itm_head (image-text matching head)', []).append(k)
            elif k.startswith('qllama.model.'):
                out['qllama.' + k[len('qllama.model.'):]] = v
            else:
                out[k] = v  # query_tokens, text_projection, projectors; anything else: strict loading names it
    else:
        for k, v in sd.items():
            if k.startswith(_VIT_TOP):
                out['vision.' + k] = v
            elif k.startswith('transformer.'):
                out['qllama.' + k[len('transformer.'):]] = v
            else:
                out[k] = v
    for k in [k for k in out if _INV_FREQ.match(k)]:
        _check_inv_freq(k, out.pop(k), path)
        unused.setdefault('rotary inv_freq (recomputed, checked equal)', []).append(k)
    return out, unused, fmt


def _int(cfg: dict, key: str, where: str) -> int:
    if key not in cfg:
        raise CheckpointError(f'{where} lacks the field {key!r} needed to build InternVL')
    return int(cfg[key])


def _layer_count(sd, prefix: str) -> int:
    idx = {int(m.group(1)) for k in sd for m in [re.match(re.escape(prefix) + r'(\d+)\.', k)] if m}
    return max(idx) + 1 if idx else 0


def clip_config(sd: Dict[str, object], hf_config, path: str) -> dict:
    """The architecture of a converted checkpoint: from ``config.json`` when there is one (InternVL-14B),
    else from the tensor shapes (stage-1 .pth; head counts are those of the release). Fields:
    ``vision`` (an InternViT arch dict), ``vocab_size``, ``hidden_size``, ``num_layers``, ``num_heads``,
    ``intermediate_size``, ``rms_norm_eps``, ``cross_attention_frequency``, ``num_query_token``,
    ``clip_embed_dim``, ``attn_pool_num_heads``, ``has_queries``."""
    has_queries = 'query_tokens' in sd
    if hf_config is not None:
        where = f'{path}/config.json'
        for key in ('use_backbone_lora', 'use_qllama_lora'):
            if hf_config.get(key):
                raise CheckpointError(f'{where}: {key}={hf_config[key]}: the weights hold LoRA adapters, which this '
                                      'loader does not merge; merge them into the weights first')
        if 'vision_config' not in hf_config or 'qllama_config' not in hf_config:
            raise CheckpointError(f"{where}: not an InternVL config (needs 'vision_config' and 'qllama_config')")
        vision = arch_from_hf_config(hf_config['vision_config'])
        if hf_config.get('force_image_size'):
            vision = parse_arch(dict(vision, img_size=int(hf_config['force_image_size'])))
        q = hf_config['qllama_config']
        if q.get('hidden_act', 'silu') != 'silu':
            raise CheckpointError(f"{where}: qllama_config.hidden_act is {q['hidden_act']!r}; QLLaMA uses 'silu'")
        if q.get('rope_scaling'):
            raise CheckpointError(f"{where}: qllama_config.rope_scaling={q['rope_scaling']!r} is not supported "
                                  '(the release uses plain rotary embeddings)')
        cfg = dict(vision=vision, vocab_size=_int(q, 'vocab_size', where), hidden_size=_int(q, 'hidden_size', where),
                   num_layers=_int(q, 'num_hidden_layers', where), num_heads=_int(q, 'num_attention_heads', where),
                   intermediate_size=_int(q, 'intermediate_size', where),
                   rms_norm_eps=float(q.get('rms_norm_eps', 1e-6)),
                   cross_attention_frequency=int(hf_config.get('cross_attention_frequency', 2)),
                   num_query_token=int(hf_config.get('num_query_token', 96)),
                   clip_embed_dim=int(hf_config.get('clip_embed_dim', 768)),
                   attn_pool_num_heads=int(hf_config.get('attn_pool_num_heads', ATTN_POOL_HEADS)))
    else:
        need = ('qllama.embed_tokens.weight', 'qllama.layers.0.mlp.gate_proj.weight', 'text_projection')
        missing = [k for k in need if k not in sd]
        if missing:
            raise CheckpointError(f'{path}: cannot read the text tower\'s shape: keys {missing} are missing')
        vocab, hidden = sd['qllama.embed_tokens.weight'].shape
        vision = infer_arch({k[len('vision.'):]: v for k, v in sd.items() if k.startswith('vision.')}, path)
        cfg = dict(vision=vision, vocab_size=int(vocab), hidden_size=int(hidden),
                   num_layers=_layer_count(sd, 'qllama.layers.'), num_heads=int(hidden) // LLAMA_HEAD_DIM,
                   intermediate_size=int(sd['qllama.layers.0.mlp.gate_proj.weight'].shape[0]), rms_norm_eps=1e-6,
                   cross_attention_frequency=2,
                   num_query_token=int(sd['query_tokens'].shape[1]) if has_queries else 96,
                   clip_embed_dim=int(sd['text_projection'].shape[-1]), attn_pool_num_heads=ATTN_POOL_HEADS)
    cfg['has_queries'] = has_queries
    return cfg


def check_clip_state(model_shapes: Dict[str, torch.Size], sd: Dict[str, object], path: str, fmt: str):
    """Strict key and shape check of a whole converted checkpoint against the full model, in one line."""
    missing = sorted(set(model_shapes) - set(sd))
    unexpected = sorted(set(sd) - set(model_shapes))
    bad = [f'{k}: checkpoint {tuple(sd[k].shape)} vs model {tuple(model_shapes[k])}'
           for k in sorted(set(model_shapes) & set(sd)) if tuple(sd[k].shape) != tuple(model_shapes[k])]
    if missing or unexpected or bad:
        parts = ([f'missing keys: {list_keys(missing)}'] if missing else []) + \
                ([f'unexpected keys: {list_keys(unexpected)}'] if unexpected else []) + \
                ([f'shape mismatch: {"; ".join(bad[:6])}' + (f' ({len(bad)} in all)' if len(bad) > 6 else '')]
                 if bad else [])
        raise CheckpointError(f'{path} ({CLIP_FORMATS[fmt]}) does not fit InternVL (names after conversion): '
                              + '; '.join(parts))
