"""Open any released InternViT checkpoint and load it, strictly, into an InternViT.

``load_backbone(path, config=None, **overrides)`` builds the model the checkpoint describes on the
``meta`` device and fills it tensor by tensor in the target dtype (bf16 by default for the 6B
presets), so the 6B is never materialised in fp32.
"""
import json
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Union

import torch
from mmengine.logging import print_log

from ..layers.pos_embed import resample_abs_pos_embed
from ..layers.vision_transformer import ARCH_KEYS, ARCH_PRESETS, parse_arch
from .errors import CheckpointError, list_keys
from .formats import FORMATS, convert_to_internvit
from .io import LazyTensor, read_pickle, read_safetensors
from .sharded import is_sharded_checkpoint

PICKLE_SUFFIXES = ('.pth', '.pt', '.bin', '.ckpt')
# the number of heads is not in the tensors: known widths
HEADS_BY_WIDTH = {3200: 25, 1024: 16}


@dataclass
class Source:
    """What a checkpoint path holds: lazy tensors, config, files, wrapper and metadata."""
    path: str
    tensors: Dict[str, LazyTensor]
    files: List[str]
    config: Optional[dict] = None
    wrapper: Optional[str] = None
    metadata: dict = field(default_factory=dict)


def _read_file(path: Path):
    if path.suffix == '.safetensors':
        t, meta = read_safetensors(path)
        return t, None, meta
    if path.suffix in PICKLE_SUFFIXES:
        t, wrapper, _ = read_pickle(path)
        return t, wrapper, {}
    raise CheckpointError(f'{path}: unknown checkpoint file type (expected .safetensors, .pth, .pt, .bin)')


def _read_index(index: Path) -> Source:
    try:
        weight_map = json.loads(index.read_text())['weight_map']
    except (OSError, ValueError, KeyError) as e:
        raise CheckpointError(f'{index}: not a sharded-checkpoint index (needs "weight_map"): {e}') from e
    shards = sorted(set(weight_map.values()))
    tensors: Dict[str, LazyTensor] = {}
    wrapper = None
    for shard in shards:
        p = index.parent / shard
        if not p.is_file():
            raise CheckpointError(f'{index}: shard {shard} is missing from {index.parent}')
        t, wrapper, _ = _read_file(p)
        for k in [k for k, s in weight_map.items() if s == shard]:
            if k not in t:
                raise CheckpointError(f'{index}: key {k!r} is mapped to {shard}, which does not contain it')
        tensors.update(t)
    return Source(str(index), tensors, [str(index.parent / s) for s in shards], wrapper=wrapper)


def _deepspeed_file(d: Path) -> Optional[Path]:
    f = d / 'mp_rank_00_model_states.pt'
    if f.is_file():
        return f
    latest = d / 'latest'
    if latest.is_file():
        f = d / latest.read_text().strip() / 'mp_rank_00_model_states.pt'
        if f.is_file():
            return f
    steps = sorted(d.glob('global_step*/mp_rank_00_model_states.pt'),
                   key=lambda p: int(re.sub(r'\D', '', p.parent.name) or 0))
    return steps[-1] if steps else None


def open_checkpoint(path: Union[str, Path]) -> Source:
    """Read what ``path`` holds (file, sharded index, HF directory, DeepSpeed directory) lazily."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f'checkpoint not found: {path}')
    config = None
    if path.is_dir():
        cfg_file = path / 'config.json'
        if cfg_file.is_file():
            try:
                config = json.loads(cfg_file.read_text())
            except ValueError as e:
                raise CheckpointError(f'{cfg_file}: invalid JSON: {e}') from e
        for name in ('model.safetensors.index.json', 'pytorch_model.bin.index.json'):
            if (path / name).is_file():
                src = _read_index(path / name)
                src.config, src.path = config, str(path)
                return src
        for name in ('model.safetensors', 'pytorch_model.bin'):
            if (path / name).is_file():
                t, wrapper, meta = _read_file(path / name)
                return Source(str(path), t, [str(path / name)], config, wrapper, meta)
        if is_sharded_checkpoint(path):
            raise CheckpointError(f'{path} is a sharded FSDP checkpoint (rank*.pth): merge it into one file first: '
                                  f'python tools/consolidate_checkpoint.py {path} OUT.pth')
        ds = _deepspeed_file(path)
        if ds is not None:
            t, wrapper, meta = _read_file(ds)
            return Source(str(path), t, [str(ds)], config, wrapper, meta)
        raise CheckpointError(f'{path}: no checkpoint found in this directory (looked for *.index.json, '
                              'model.safetensors, pytorch_model.bin, DeepSpeed mp_rank_00_model_states.pt)')
    if path.name.endswith('.index.json'):
        src = _read_index(path)
        cfg_file = path.parent / 'config.json'
        if cfg_file.is_file():
            src.config = json.loads(cfg_file.read_text())
        return src
    t, wrapper, meta = _read_file(path)
    return Source(str(path), t, [str(path)], config, wrapper, meta)


# ----------------------------------------------------------------------------- architecture
def arch_from_hf_config(cfg: dict) -> dict:
    """Architecture dict from a Hugging Face ``config.json`` (InternViT, InternVL chat or -hf)."""
    if 'vision_config' in cfg:
        cfg = cfg['vision_config']

    def first(v):
        return int(v[0]) if isinstance(v, (list, tuple)) else int(v)
    try:
        arch = dict(
            embed_dims=int(cfg['hidden_size']), num_layers=int(cfg['num_hidden_layers']),
            num_heads=int(cfg['num_attention_heads']), feedforward_channels=int(cfg['intermediate_size']),
            norm_type=cfg.get('norm_type') or 'rms_norm',  # absent from every 6B config: rms_norm
            qk_normalization=bool(cfg.get('qk_normalization', cfg.get('use_qk_norm', False))),
            qkv_bias=bool(cfg.get('qkv_bias', cfg.get('attention_bias', False))),
            patch_size=first(cfg['patch_size']), img_size=first(cfg['image_size']),
            norm_eps=float(cfg.get('layer_norm_eps', 1e-6)))
    except KeyError as e:
        raise CheckpointError(f'config.json lacks the field {e.args[0]!r} needed to build InternViT') from e
    ls = cfg.get('layer_scale_init_value', cfg.get('initializer_factor'))
    arch['layer_scale_init'] = 0.1 if ls is None else float(ls)
    return parse_arch(arch)


def _block_count(sd) -> int:
    idx = {int(m.group(1)) for k in sd for m in [re.match(r'^blocks\.(\d+)\.', k)] if m}
    return max(idx) + 1 if idx else 0


def infer_arch(sd: Dict[str, LazyTensor], path: str = '') -> dict:
    """The architecture the tensor shapes decide; errors say what to pass where they do not."""
    need = ('cls_token', 'pos_embed', 'patch_embed.proj.weight', 'blocks.0.mlp.fc1.weight')
    missing = [k for k in need if k not in sd]
    if missing:
        raise CheckpointError(f'{path}: cannot infer the architecture, keys {missing} are missing')
    C = sd['cls_token'].shape[-1]
    ffn = sd['blocks.0.mlp.fc1.weight'].shape[0]
    patch = sd['patch_embed.proj.weight'].shape[-1]
    n = sd['pos_embed'].shape[1] - 1
    side = int(round(n ** 0.5))
    if side * side != n:
        raise CheckpointError(f'{path}: pos_embed has {n} patch positions, not a square grid: pass config=')
    arch = dict(embed_dims=C, num_layers=_block_count(sd), feedforward_channels=ffn, patch_size=patch,
                img_size=side * patch, norm_type='layer_norm' if 'blocks.0.norm1.bias' in sd else 'rms_norm',
                qk_normalization='blocks.0.attn.q_norm.weight' in sd, qkv_bias='blocks.0.attn.qkv.bias' in sd,
                layer_scale_init=0.1, norm_eps=1e-6)
    for preset in ARCH_PRESETS.values():
        same = all(preset[k] == arch[k] for k in ('embed_dims', 'feedforward_channels', 'norm_type',
                                                   'qk_normalization', 'qkv_bias'))
        if same:
            arch['num_heads'] = preset['num_heads']
            return parse_arch(arch)
    raise CheckpointError(
        f'{path}: a width-{C} InternViT is not a known preset, and the number of attention heads is not '
        'stored in the tensors: pass config= (a preset name, an arch dict with num_heads, or a config.json)')


def arch_for_source(src: Source, sd: dict, config=None, overrides: Optional[dict] = None) -> dict:
    if config is None:
        if src.metadata.get('arch'):
            arch = parse_arch(json.loads(src.metadata['arch']))
        elif src.config is not None:
            arch = arch_from_hf_config(src.config)
        else:
            arch = infer_arch(sd, src.path)
    elif isinstance(config, dict) and ('hidden_size' in config or 'vision_config' in config):
        arch = arch_from_hf_config(config)
    elif isinstance(config, (str, Path)) and str(config).endswith('.json'):
        arch = arch_from_hf_config(json.loads(Path(config).read_text()))
    else:
        arch = parse_arch(config)
    for k, v in (overrides or {}).items():
        if k in ARCH_KEYS or k in ('layer_scale_init', 'norm_eps'):
            arch[k] = v
    return parse_arch(arch)


# ----------------------------------------------------------------------------- filling
def _resample_patch_embed(w: torch.Tensor, new: int) -> torch.Tensor:
    """Pseudo-inverse resize of a patch-embedding kernel (FlexiViT): the resized kernel gives the
    same tokens on the bicubically resized patch."""
    old = w.shape[-1]
    eye = torch.eye(old * old, dtype=torch.float32).reshape(old * old, 1, old, old)
    basis = torch.nn.functional.interpolate(eye, size=(new, new), mode='bicubic', align_corners=False,
                                            antialias=False).reshape(old * old, new * new)
    pinv = torch.linalg.pinv(basis)  # [new*new, old*old]
    flat = w.float().reshape(-1, old * old)
    return (flat @ pinv.T).reshape(*w.shape[:-2], new, new)


def check_compatible(model_shapes: Dict[str, torch.Size], sd: Dict[str, LazyTensor], where: str):
    """Strict key and shape check; position and patch embeddings may differ in grid/kernel."""
    missing = sorted(set(model_shapes) - set(sd))
    unexpected = sorted(set(sd) - set(model_shapes))
    bad = []
    for k in sorted(set(model_shapes) & set(sd)):
        ms, cs = tuple(model_shapes[k]), tuple(sd[k].shape)
        if ms == cs:
            continue
        if k == 'pos_embed' and len(cs) == 3 and cs[-1] == ms[-1]:
            continue
        if k == 'patch_embed.proj.weight' and cs[:2] == ms[:2] and cs[2] == cs[3]:
            continue
        bad.append(f'{k}: checkpoint {cs} vs model {ms}')
    if missing or unexpected or bad:
        parts = []
        if missing:
            parts.append(f'missing keys: {list_keys(missing)}')
        if unexpected:
            parts.append(f'unexpected keys: {list_keys(unexpected)}')
        if bad:
            parts.append('shape mismatch: ' + '; '.join(bad[:8]) + (f' ... ({len(bad)} in all)' if len(bad) > 8 else ''))
        raise CheckpointError(f'{where} does not fit the model:\n  ' + '\n  '.join(parts))


def progress(items, desc: str, total: int):
    try:
        from tqdm import tqdm
    except ImportError:
        return items
    return tqdm(items, desc=desc, total=total, unit='tensor', disable=not sys.stderr.isatty(),
                dynamic_ncols=True)


def fill_model(model: torch.nn.Module, sd: Dict[str, LazyTensor], where: str,
               dtype: Optional[torch.dtype] = None, grid_of=None, patch_resize: str = 'announce'):
    """Copy ``sd`` into ``model`` strictly. A model on the ``meta`` device is first allocated in
    ``dtype`` (default: its own), so only the target-dtype weights and one tensor are in memory.

    A patch-embedding kernel of another size than the model's patch changes what the weights compute:
    ``patch_resize='announce'`` resamples it (FlexiViT pseudo-inverse) with a warning naming both sizes
    (the model's patch size was asked for); ``'refuse'`` raises ``CheckpointError`` (the size came
    from the checkpoint's own description, which then contradicts its weights)."""
    params = dict(model.named_parameters())
    params.update(dict(model.named_buffers()))
    check_compatible({k: v.shape for k, v in params.items() if k in model.state_dict()}, sd, where)
    pk = 'patch_embed.proj.weight'
    if pk in sd and pk in params and tuple(sd[pk].shape[-2:]) != tuple(params[pk].shape[-2:]):
        old, new = sd[pk].shape[-1], params[pk].shape[-1]
        if patch_resize == 'refuse':
            raise CheckpointError(f'{where}: the patch-embedding kernel is {old}x{old} but the architecture '
                                  f'read with it says patch_size {new}: the description contradicts the '
                                  f'weights. Pass patch_size={new} explicitly to resample the kernel, or '
                                  'fix the config')
        print_log(f'{where}: resampling the {old}x{old} patch-embedding kernel to {new}x{new} (FlexiViT '
                  f'pseudo-inverse): the model was asked for patch size {new}; outputs differ from the '
                  f'released {old}-pixel model', logger='current', level=30)
    if any(p.is_meta for p in params.values()):
        if dtype is not None:
            model.to(dtype)
        model.to_empty(device='cpu')
        params = dict(model.named_parameters())
        params.update(dict(model.named_buffers()))
    with torch.no_grad():
        for k in progress(sorted(sd), f'loading {Path(where).name}', len(sd)):
            dst = params[k]
            t = sd[k].load()
            if tuple(t.shape) != tuple(dst.shape):
                if k == 'pos_embed':
                    t = resample_abs_pos_embed(t, grid_of(dst.shape[1] - 1))
                elif k == 'patch_embed.proj.weight':
                    t = _resample_patch_embed(t, dst.shape[-1])
            dst.copy_(t)
            sd[k].release()
            del t
    if hasattr(model, '_pos_cache'):
        model._pos_cache.clear()
    return model


def strict_copy(model, sd: Dict[str, LazyTensor], where: str, skip_prefix: Optional[str] = None,
                resample: Optional[Dict[str, object]] = None, what: str = 'the model'):
    """Copy a converted state dict into ``model.state_dict()`` strictly: every model key filled
    (except under ``skip_prefix``), no unexpected key, equal shapes except for the keys of
    ``resample`` (key -> function mapping the checkpoint tensor to the model's shape)."""
    resample = resample or {}
    state = model.state_dict()
    missing = sorted(k for k in state if k not in sd and not (skip_prefix and k.startswith(skip_prefix)))
    unexpected = sorted(k for k in sd if k not in state)
    bad = [f'{k}: checkpoint {tuple(sd[k].shape)} vs model {tuple(state[k].shape)}' for k in sd
           if k in state and tuple(sd[k].shape) != tuple(state[k].shape) and k not in resample]
    if missing or unexpected or bad:
        parts = ([f'missing keys: {list_keys(missing)}'] if missing else []) + \
                ([f'unexpected keys: {list_keys(unexpected)}'] if unexpected else []) + \
                (['shape mismatch: ' + '; '.join(bad[:8]) + (f' ... ({len(bad)} in all)' if len(bad) > 8 else '')]
                 if bad else [])
        raise CheckpointError(f'{where} does not fit {what}:\n  ' + '\n  '.join(parts))
    with torch.no_grad():
        for k, lt in sd.items():
            t = lt.load()
            if k in resample and tuple(t.shape) != tuple(state[k].shape):
                t = resample[k](t)
            state[k].copy_(t)
            lt.release()
    return model


def describe_source(src: Source, fmt: str) -> str:
    desc = FORMATS.get(fmt, fmt)
    if src.metadata.get('format') == 'perception-internvit':
        desc = f"perception safetensors (converted from {src.metadata.get('source_format', '?')})"
    if src.wrapper:
        desc += f", under '{src.wrapper}'"
    if len(src.files) > 1:
        desc += f', {len(src.files)} shards'
    return desc


def log_unused(unused: dict, path: str):
    for group, keys in unused.items():
        print_log(f'{path}: skipped {len(keys)} keys of {group}, unused by the backbone', logger='current')


def read_backbone_state(path) -> tuple:
    """(Source, converted backbone state dict, unused groups, format) for ``path``."""
    src = open_checkpoint(path)
    sd, unused, fmt = convert_to_internvit(src.tensors)
    return src, sd, unused, fmt


def default_dtype(arch: dict) -> torch.dtype:
    return torch.bfloat16 if arch['embed_dims'] >= 3200 else torch.float32


def read_converted(path, prefix: Optional[str] = None):
    """``(source, state dict in InternViT names, unused keys, format)`` of any released checkpoint;
    ``prefix`` selects a sub-dict first (e.g. ``'backbone.'``), refused when no key has it."""
    src = open_checkpoint(path)
    tensors = src.tensors
    if prefix:
        tensors = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
        if not tensors:
            raise CheckpointError(f'{path}: no keys start with prefix {prefix!r}')
    sd, unused, fmt = convert_to_internvit(tensors)
    return src, sd, unused, fmt


def load_pretrained_into(model, path, prefix: Optional[str] = None):
    """Strictly load any released checkpoint into an existing InternViT (``init_cfg`` Pretrained).

    ``prefix`` selects a sub-dict first (e.g. ``'backbone.'``)."""
    src, sd, unused, fmt = read_converted(path, prefix)
    grid = model.pretrain_grid
    fill_model(model, sd, src.path, grid_of=lambda n: grid)
    log_unused(unused, src.path)
    print_log(f'loaded {src.path} into InternViT: {describe_source(src, fmt)}; attention backend '
              f'{model.resolved_attn_backend()!r} (requested {model.attn_backend!r})', logger='current')
    return model
