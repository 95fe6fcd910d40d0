"""Pure converters from every released InternViT layout to this project's key names.

Each ``convert_<source>(state_dict) -> (backbone_state_dict, unused)`` renames keys (values are
passed through untouched, so they may be lazy) and sorts out the groups a backbone does not use
(``unused``: group name -> keys). :func:`detect_format` chooses the converter from the keys.

Target names (format A, InternVL's ``intern_vit_6b_224px.pth``): ``cls_token``, ``pos_embed``,
``patch_embed.proj.{weight,bias}``, ``blocks.N.{norm1,norm2}.*``, ``blocks.N.attn.{qkv,q_norm,k_norm,proj}.*``,
``blocks.N.mlp.{fc1,fc2}.*``, ``blocks.N.{ls1,ls2}.gamma``.
"""
import re
from typing import Dict, List, Tuple

from .errors import CheckpointError, list_keys
from .io import concat_lazy

FORMATS = {
    'internvit': 'InternViT layout (format A: InternVL release / timm / perception)',
    'hf': 'Hugging Face InternViT (format B)',
    'internvl_chat': 'InternVL chat vision tower, remote-code layout (format E)',
    'hf_native': 'InternVL chat vision tower, transformers-native layout (format E)',
    'mmseg': 'segmentor state dict (format C / F / perception segmentor)',
    'imagenet_head': 'ImageNet linear-probe head (format D)',
}

Unused = Dict[str, List[str]]


def strip_common_prefix(sd: dict, prefix: str) -> dict:
    if sd and all(k.startswith(prefix) for k in sd):
        return {k[len(prefix):]: v for k, v in sd.items()}
    return sd


def detect_format(keys) -> str:
    keys = list(keys)
    ks = [k[len('module.'):] if k.startswith('module.') else k for k in keys]

    def has(prefix):
        return any(k.startswith(prefix) for k in ks)
    if has('vision_model.'):
        return 'internvl_chat'
    if has('vision_tower.') or has('model.vision_tower.') or has('embeddings.patch_embeddings.') \
            or has('encoder.layer.'):
        return 'hf_native'
    if has('encoder.layers.') or has('embeddings.patch_embedding.') or has('embeddings.class_embedding'):
        return 'hf'
    if has('backbone.'):
        return 'mmseg'
    if has('blocks.') or has('patch_embed.proj.') or 'cls_token' in ks:
        return 'internvit'
    if 'head.weight' in ks and any(k.startswith('norm.') for k in ks):
        return 'imagenet_head'
    raise CheckpointError('unrecognised checkpoint layout: none of the InternViT formats matches its keys '
                          f'({list_keys(keys, 8)})')


def _split_unused(sd: dict, groups: Dict[str, Tuple[str, ...]]) -> Tuple[dict, Unused]:
    kept, unused = {}, {}
    for k, v in sd.items():
        for name, prefixes in groups.items():
            if k.startswith(prefixes):
                unused.setdefault(name, []).append(k)
                break
        else:
            kept[k] = v
    return kept, unused


def convert_internvit(sd: dict) -> Tuple[dict, Unused]:
    """Format A (bare or under ``module``), timm's converted 300M weights, perception's own files."""
    sd = strip_common_prefix(sd, 'module.')
    return _split_unused(sd, {'clip_projector (stage-1 contrastive head)': ('clip_projector.',),
                              # a segmentor's backbone.* read with prefix='backbone.': its pyramid
                              'pyramid (up1..up4)': ('up1.', 'up2.', 'up3.', 'up4.')})


_HF_BLOCK = re.compile(r'^encoder\.layers\.(\d+)\.(.+)$')


def convert_hf(sd: dict) -> Tuple[dict, Unused]:
    """Format B: Hugging Face ``InternVisionModel`` (``embeddings.*``, ``encoder.layers.N.*``)."""
    sd = strip_common_prefix(sd, 'module.')
    out = {}
    emb = {'embeddings.class_embedding': 'cls_token', 'embeddings.position_embedding': 'pos_embed',
           'embeddings.patch_embedding.weight': 'patch_embed.proj.weight',
           'embeddings.patch_embedding.bias': 'patch_embed.proj.bias'}
    for k, v in sd.items():
        if k in emb:
            out[emb[k]] = v
            continue
        m = _HF_BLOCK.match(k)
        if m:
            i, rest = m.groups()
            if rest in ('ls1', 'ls2'):
                rest += '.gamma'
            out[f'blocks.{i}.{rest}'] = v
        else:
            out[k] = v  # left as is: strict loading names it
    return out, {}


def convert_internvl_chat(sd: dict) -> Tuple[dict, Unused]:
    """Format E, remote-code layout: format B keys under ``vision_model.`` beside the LLM."""
    sd = strip_common_prefix(sd, 'module.')
    vision = {k[len('vision_model.'):]: v for k, v in sd.items() if k.startswith('vision_model.')}
    rest = {k: v for k, v in sd.items() if not k.startswith('vision_model.')}
    rest, unused = _split_unused(rest, {'language_model': ('language_model.',), 'mlp1 (projector)': ('mlp1.',)})
    out, _ = convert_hf(vision)
    out.update(rest)
    return out, unused


_NATIVE_BLOCK = re.compile(r'^encoder\.layer\.(\d+)\.(.+)$')
_NATIVE_NAMES = {
    'layernorm_before': 'norm1', 'layernorm_after': 'norm2', 'attention.q_norm': 'attn.q_norm',
    'attention.k_norm': 'attn.k_norm', 'attention.projection_layer': 'attn.proj', 'mlp.fc1': 'mlp.fc1',
    'mlp.fc2': 'mlp.fc2',
}


def convert_hf_native(sd: dict) -> Tuple[dict, Unused]:
    """Format E, transformers-native ``InternVLVisionModel`` (split q/k/v, ``lambda_1/2``)."""
    sd = strip_common_prefix(sd, 'module.')
    unused_groups = {'language_model': ('language_model.', 'model.language_model.', 'lm_head.'),
                     'multi_modal_projector': ('multi_modal_projector.', 'model.multi_modal_projector.')}
    sd, unused = _split_unused(sd, unused_groups)
    for prefix in ('model.vision_tower.', 'vision_tower.'):
        if any(k.startswith(prefix) for k in sd):
            sd = {(k[len(prefix):] if k.startswith(prefix) else k): v for k, v in sd.items()}
    emb = {'embeddings.cls_token': 'cls_token', 'embeddings.position_embeddings': 'pos_embed',
           'embeddings.patch_embeddings.projection.weight': 'patch_embed.proj.weight',
           'embeddings.patch_embeddings.projection.bias': 'patch_embed.proj.bias'}
    out, qkv = {}, {}
    for k, v in sd.items():
        if k in emb:
            out[emb[k]] = v
            continue
        m = _NATIVE_BLOCK.match(k)
        if not m:
            out[k] = v
            continue
        i, rest = m.groups()
        pm = re.match(r'^attention\.([qkv])_proj\.(weight|bias)$', rest)
        if pm:
            qkv.setdefault((i, pm.group(2)), {})[pm.group(1)] = v
            continue
        if rest in ('lambda_1', 'lambda_2'):
            out[f'blocks.{i}.ls{rest[-1]}.gamma'] = v
            continue
        for src, dst in _NATIVE_NAMES.items():
            if rest.startswith(src + '.'):
                out[f'blocks.{i}.{dst}{rest[len(src):]}'] = v
                break
        else:
            out[f'encoder.layer.{i}.{rest}'] = v  # unknown: strict loading names it
    for (i, kind), parts in qkv.items():
        if set(parts) != {'q', 'k', 'v'}:
            missing = sorted({'q', 'k', 'v'} - set(parts))
            raise CheckpointError(f'encoder.layer.{i}.attention: {kind} of {missing}_proj missing '
                                  '(q_proj, k_proj and v_proj must all be present)')
        out[f'blocks.{i}.attn.qkv.{kind}'] = concat_lazy([parts['q'], parts['k'], parts['v']], 0)
    return out, unused


def convert_mmseg(sd: dict, keep: Tuple[str, ...] = ('backbone.',)) -> Tuple[dict, Unused]:
    """Segmentor checkpoints (InternVL ADE20K releases, DeepSpeed runs, this project's own):
    the ``backbone.`` part as a backbone state dict; pyramid and heads reported as unused."""
    sd = strip_common_prefix(sd, 'module.')
    groups = {'pyramid (backbone.up1..up4)': ('backbone.up1.', 'backbone.up2.', 'backbone.up3.', 'backbone.up4.'),
              'neck': ('neck.',), 'decode_head': ('decode_head.',), 'auxiliary_head': ('auxiliary_head.',)}
    sd, unused = _split_unused(sd, groups)
    out = {}
    for k, v in sd.items():
        if k.startswith('backbone.'):
            out[k[len('backbone.'):]] = v
        else:
            out[k] = v
    if not out:
        raise CheckpointError(
            'this segmentor checkpoint holds no ViT weights (only ' + ', '.join(sorted(unused)) + '): InternVL\'s '
            'frozen ADE20K releases are like that; load the backbone from intern_vit_6b_224px.pth (format A) '
            'and the heads from this file')
    fmt = detect_format(out)
    if fmt == 'hf':
        out, _ = convert_hf(out)
    return out, unused


CONVERTERS = {
    'internvit': convert_internvit,
    'hf': convert_hf,
    'internvl_chat': convert_internvl_chat,
    'hf_native': convert_hf_native,
    'mmseg': convert_mmseg,
}


def convert_to_internvit(sd: dict, fmt: str = None) -> Tuple[dict, Unused, str]:
    """Detect the format (unless given) and convert; returns (state_dict, unused, format)."""
    fmt = fmt or detect_format(sd)
    if fmt == 'imagenet_head':
        raise CheckpointError('this is an ImageNet linear-probe head (format D: norm.* + head.*), not a '
                              'backbone: load it through the classification config')
    return (*CONVERTERS[fmt](sd), fmt)
