"""Every weight format users hold, written in its released layout and loaded into a tiny InternViT.

Each checkpoint is built here from format-A weights (a randomized ``InternViT(TINY)``), renamed into
the released layout by this file's own code (not the package's converters), and the loaded model is
compared with ``benchmarks.reference.forward`` run on the original format-A weights. Layouts follow
``shared/docs/INTERNVIT-REFERENCE.md``, section "Weight formats users hold".
"""
import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from benchmarks import reference as ref
from conftest import TINY, TINY_LN, randomize_
from perception import load_backbone
from perception.checkpoint import CheckpointError, arch_from_hf_config, infer_arch, load_pretrained_into
from perception.checkpoint.io import LazyTensor
from perception.models import InternViT

ROOT = Path(__file__).resolve().parents[1]


# ----------------------------------------------------------------------------- weights and layouts
def _weights(arch, seed):
    m = randomize_(InternViT(arch), seed=seed)
    return {k: v.detach().clone() for k, v in m.state_dict().items()}


@pytest.fixture(scope='module')
def sd_a():
    """Format-A weights of TINY (RMSNorm, qk norm, no qkv bias)."""
    return _weights(TINY, seed=11)


@pytest.fixture(scope='module')
def sd_ln():
    """Format-A weights of TINY_LN (LayerNorm, qkv bias, no qk norm: the 300M family)."""
    return _weights(TINY_LN, seed=12)


def bf16(sd):
    return {k: v.to(torch.bfloat16) for k, v in sd.items()}


def rounded(sd):
    """What a bf16 file holds, in fp32: the reference for bf16 checkpoints."""
    return {k: v.to(torch.bfloat16).float() for k, v in sd.items()}


def to_hf(sd):
    """Format B names (HF InternVisionModel)."""
    out = {}
    for k, v in sd.items():
        if k == 'cls_token':
            out['embeddings.class_embedding'] = v
        elif k == 'pos_embed':
            out['embeddings.position_embedding'] = v
        elif k.startswith('patch_embed.proj.'):
            out['embeddings.patch_embedding.' + k.rsplit('.', 1)[1]] = v
        else:
            _, i, rest = k.split('.', 2)
            if rest in ('ls1.gamma', 'ls2.gamma'):
                rest = rest[:3]  # raw tensors, no '.gamma'
            out[f'encoder.layers.{i}.{rest}'] = v
    return out


_NATIVE = {'norm1': 'layernorm_before', 'norm2': 'layernorm_after', 'attn.q_norm': 'attention.q_norm',
           'attn.k_norm': 'attention.k_norm', 'attn.proj': 'attention.projection_layer',
           'mlp.fc1': 'mlp.fc1', 'mlp.fc2': 'mlp.fc2'}


def to_hf_native(sd, prefix):
    """Format E, transformers-native names (InternVLVisionModel): split q/k/v, lambda_1/2."""
    C = sd['cls_token'].shape[-1]
    out = {}
    for k, v in sd.items():
        if k == 'cls_token':
            out['embeddings.cls_token'] = v
        elif k == 'pos_embed':
            out['embeddings.position_embeddings'] = v
        elif k.startswith('patch_embed.proj.'):
            out['embeddings.patch_embeddings.projection.' + k.rsplit('.', 1)[1]] = v
        else:
            _, i, rest = k.split('.', 2)
            p = f'encoder.layer.{i}.'
            if rest.startswith('attn.qkv.'):
                kind = rest.rsplit('.', 1)[1]
                for j, name in enumerate('qkv'):
                    out[f'{p}attention.{name}_proj.{kind}'] = v[j * C:(j + 1) * C].clone()
            elif rest == 'ls1.gamma':
                out[p + 'lambda_1'] = v
            elif rest == 'ls2.gamma':
                out[p + 'lambda_2'] = v
            else:
                mod, param = rest.rsplit('.', 1)
                out[f'{p}{_NATIVE[mod]}.{param}'] = v
    return {prefix + k: v for k, v in out.items()}


def hf_config(arch, **extra):
    """config.json of an HF InternViT release, with the arch's numbers. 6B configs carry no
    ``norm_type`` (meaning rms_norm); only the 300M one says 'layer_norm'."""
    cfg = {
        'architectures': ['InternVisionModel'],
        'auto_map': {'AutoConfig': 'configuration_intern_vit.InternVisionConfig',
                     'AutoModel': 'modeling_intern_vit.InternVisionModel'},
        'attention_dropout': 0.0, 'drop_path_rate': 0.0, 'dropout': 0.0, 'hidden_act': 'gelu',
        'hidden_size': arch['embed_dims'], 'image_size': arch['img_size'], 'initializer_factor': 0.1,
        'initializer_range': 1e-10, 'intermediate_size': arch['feedforward_channels'], 'layer_norm_eps': 1e-06,
        'model_type': 'intern_vit_6b', 'num_attention_heads': arch['num_heads'], 'num_channels': 3,
        'num_hidden_layers': arch['num_layers'], 'patch_size': arch['patch_size'],
        'qk_normalization': arch['qk_normalization'], 'qkv_bias': arch['qkv_bias'], 'torch_dtype': 'bfloat16',
        'transformers_version': '4.37.2', 'use_flash_attn': True,
    }
    if arch['norm_type'] == 'layer_norm':
        cfg['norm_type'] = 'layer_norm'
    cfg.update(extra)
    return cfg


def native_config(arch):
    """config.json of a transformers-native ``*-hf`` InternVL chat repo."""
    vision = {
        'attention_bias': arch['qkv_bias'], 'attention_dropout': 0.0, 'dropout': 0.0, 'hidden_act': 'gelu',
        'hidden_dropout_prob': 0.0, 'hidden_size': arch['embed_dims'],
        'image_size': [arch['img_size'], arch['img_size']], 'initializer_factor': 0.1, 'initializer_range': 1e-10,
        'intermediate_size': arch['feedforward_channels'], 'layer_norm_eps': 1e-06, 'layer_scale_init_value': 0.1,
        'model_type': 'internvl_vision', 'norm_type': arch['norm_type'], 'num_attention_heads': arch['num_heads'],
        'num_channels': 3, 'num_hidden_layers': arch['num_layers'],
        'patch_size': [arch['patch_size'], arch['patch_size']], 'projection_dropout': 0.0,
        'use_absolute_position_embeddings': True, 'use_mask_token': False, 'use_mean_pooling': True,
        'use_qk_norm': arch['qk_normalization'],
    }
    return {'architectures': ['InternVLForConditionalGeneration'], 'downsample_ratio': 0.5,
            'image_token_id': 151667, 'model_type': 'internvl', 'projector_hidden_act': 'gelu',
            'text_config': {'model_type': 'qwen2', 'hidden_size': 32, 'num_hidden_layers': 1},
            'torch_dtype': 'bfloat16', 'vision_config': vision, 'vision_feature_layer': -1,
            'vision_feature_select_strategy': 'default'}


def write_json(path, obj):
    Path(path).write_text(json.dumps(obj, indent=2))


def write_sharded(d, sd, n, kind):
    """HF sharding: consecutive keys per shard, an index with "weight_map"."""
    d = Path(d)
    d.mkdir(parents=True, exist_ok=True)
    keys = list(sd)
    per = -(-len(keys) // n)
    weight_map, total = {}, 0
    for s in range(n):
        part = {k: sd[k].contiguous() for k in keys[s * per:(s + 1) * per]}
        if kind == 'bin':
            name = f'pytorch_model-{s + 1:05d}-of-{n:05d}.bin'
            torch.save(part, d / name)
        else:
            name = f'model-{s + 1:05d}-of-{n:05d}.safetensors'
            save_file(part, d / name, metadata={'format': 'pt'})
        for k, v in part.items():
            weight_map[k] = name
            total += v.numel() * v.element_size()
    index = 'pytorch_model.bin.index.json' if kind == 'bin' else 'model.safetensors.index.json'
    write_json(d / index, {'metadata': {'total_size': total}, 'weight_map': weight_map})
    return d / index


def clip_projector(C, g):
    t = {}
    for n in ('q', 'k', 'v'):
        t[f'clip_projector.norm1_{n}.weight'] = torch.randn(C, generator=g)
        t[f'clip_projector.norm1_{n}.bias'] = torch.randn(C, generator=g)
        t[f'clip_projector.cross_attn.{n}.weight'] = torch.randn(C // 2, C, generator=g)
        t[f'clip_projector.cross_attn.{n}_bias'] = torch.randn(C // 2, generator=g)
    t['clip_projector.cross_attn.proj.weight'] = torch.randn(C // 2, C // 2, generator=g)
    t['clip_projector.cross_attn.proj.bias'] = torch.randn(C // 2, generator=g)
    return t


# ----------------------------------------------------------------------------- comparing with the formula
def image(arch, seed=0, side=None):
    side = side or arch['img_size']
    return torch.randn(2, 3, side, side, generator=torch.Generator().manual_seed(seed))


def assert_matches_reference(model, ref_sd, arch, img=None):
    """``model`` was built with out_indices=(0, -1); compare both maps with the formula."""
    img = image(arch) if img is None else img
    expect, (h, w) = ref.forward(ref_sd, img, arch)
    with torch.no_grad():
        got = model(img)
    assert len(got) == 2
    for j, i in enumerate((0, arch['num_layers'] - 1)):
        exp = expect[i][:, 1:].reshape(img.shape[0], h, w, -1).permute(0, 3, 1, 2)
        assert got[j].dtype == torch.float32
        err = ((got[j] - exp).abs().max() / exp.abs().max()).item()
        assert err < 1e-5, f'block {i}: relative error {err:.3g}'


def load(path, config=None, **kw):
    kw.setdefault('dtype', 'fp32')
    return load_backbone(path, config, out_indices=(0, -1), attn_backend='math', **kw)


def pretrained(arch, path, prefix=None):
    init_cfg = dict(type='Pretrained', checkpoint=str(path))
    if prefix:
        init_cfg['prefix'] = prefix
    m = InternViT(dict(arch), out_indices=(0, -1), attn_backend='math', init_cfg=init_cfg)
    m.init_weights()
    return m


# ----------------------------------------------------------------------------- 1. every format
@pytest.mark.parametrize('wrapped', [False, True], ids=['bare', 'module'])
def test_format_a_release_pth(tmp_path, sd_a, wrapped):
    sd = dict(bf16(sd_a), **bf16(clip_projector(64, torch.Generator().manual_seed(5))))
    path = tmp_path / 'intern_vit_6b_224px.pth'
    torch.save({'module': sd} if wrapped else sd, path)
    assert_matches_reference(load(path, dict(TINY)), rounded(sd_a), TINY)
    assert_matches_reference(pretrained(TINY, path), rounded(sd_a), TINY)


def test_format_b_224px_sharded_bin(tmp_path, sd_a):
    d = tmp_path / 'InternViT-6B-224px'
    index = write_sharded(d, to_hf(bf16(sd_a)), 2, 'bin')
    write_json(d / 'config.json', hf_config(TINY))
    assert sorted(os.listdir(d)) == ['config.json', 'pytorch_model-00001-of-00002.bin',
                                     'pytorch_model-00002-of-00002.bin', 'pytorch_model.bin.index.json']
    assert_matches_reference(load(d), rounded(sd_a), TINY)  # no config: config.json decides
    assert_matches_reference(load(index), rounded(sd_a), TINY)
    assert_matches_reference(pretrained(TINY, d), rounded(sd_a), TINY)


def test_format_b_448px_sharded_safetensors(tmp_path, sd_a):
    d = tmp_path / 'InternViT-6B-448px-V2_5'
    index = write_sharded(d, to_hf(bf16(sd_a)), 3, 'safetensors')
    write_json(d / 'config.json', hf_config(TINY))
    assert sorted(os.listdir(d)) == ['config.json', 'model-00001-of-00003.safetensors',
                                     'model-00002-of-00003.safetensors', 'model-00003-of-00003.safetensors',
                                     'model.safetensors.index.json']
    assert_matches_reference(load(d), rounded(sd_a), TINY)
    assert_matches_reference(load(index), rounded(sd_a), TINY)
    assert_matches_reference(pretrained(TINY, index), rounded(sd_a), TINY)


def test_format_b_300m_single_safetensors_layernorm(tmp_path, sd_ln):
    d = tmp_path / 'InternViT-300M-448px'
    d.mkdir()
    save_file(to_hf(bf16(sd_ln)), d / 'model.safetensors', metadata={'format': 'pt'})
    cfg = hf_config(TINY_LN)
    assert cfg['norm_type'] == 'layer_norm' and cfg['qkv_bias'] and not cfg['qk_normalization']
    write_json(d / 'config.json', cfg)
    assert_matches_reference(load(d), rounded(sd_ln), TINY_LN)


def test_format_e_remote_code_chat_model(tmp_path, sd_a):
    g = torch.Generator().manual_seed(7)
    sd = {'vision_model.' + k: v for k, v in to_hf(bf16(sd_a)).items()}
    sd.update({'language_model.model.embed_tokens.weight': torch.randn(100, 32, generator=g),
               'language_model.model.layers.0.self_attn.q_proj.weight': torch.randn(32, 32, generator=g),
               'language_model.model.norm.weight': torch.randn(32, generator=g),
               'language_model.lm_head.weight': torch.randn(100, 32, generator=g),
               'mlp1.0.weight': torch.randn(64 * 4, generator=g), 'mlp1.0.bias': torch.randn(64 * 4, generator=g),
               'mlp1.1.weight': torch.randn(32, 64 * 4, generator=g), 'mlp1.1.bias': torch.randn(32, generator=g),
               'mlp1.3.weight': torch.randn(32, 32, generator=g), 'mlp1.3.bias': torch.randn(32, generator=g)})
    sd = bf16(sd)
    d = tmp_path / 'InternVL2_5-26B'
    write_sharded(d, sd, 2, 'safetensors')
    write_json(d / 'config.json', {
        'architectures': ['InternVLChatModel'], 'model_type': 'internvl_chat', 'downsample_ratio': 0.5,
        'force_image_size': TINY['img_size'], 'select_layer': -1, 'template': 'internvl2_5',
        'llm_config': {'architectures': ['InternLM2ForCausalLM'], 'hidden_size': 32},
        'vision_config': hf_config(TINY), 'torch_dtype': 'bfloat16'})
    assert_matches_reference(load(d), rounded(sd_a), TINY)


@pytest.mark.parametrize('prefix,arch_name', [('model.vision_tower.', 'TINY'), ('vision_tower.', 'TINY_LN')])
def test_format_e_transformers_native(tmp_path, sd_a, sd_ln, prefix, arch_name):
    arch, weights = (TINY, sd_a) if arch_name == 'TINY' else (TINY_LN, sd_ln)
    g = torch.Generator().manual_seed(8)
    sd = to_hf_native(bf16(weights), prefix)
    lm = 'model.language_model.' if prefix.startswith('model.') else 'language_model.model.'
    proj = 'model.multi_modal_projector.' if prefix.startswith('model.') else 'multi_modal_projector.'
    head = 'lm_head.weight' if prefix.startswith('model.') else 'language_model.lm_head.weight'
    sd.update(bf16({lm + 'embed_tokens.weight': torch.randn(100, 32, generator=g),
                    lm + 'norm.weight': torch.randn(32, generator=g), head: torch.randn(100, 32, generator=g),
                    proj + 'layer_norm.weight': torch.randn(4 * arch['embed_dims'], generator=g),
                    proj + 'linear_1.weight': torch.randn(32, 4 * arch['embed_dims'], generator=g)}))
    if arch['qkv_bias']:
        assert f'{prefix}encoder.layer.0.attention.k_proj.bias' in sd
    d = tmp_path / 'InternVL3-1B-hf'
    d.mkdir()
    save_file(sd, d / 'model.safetensors', metadata={'format': 'pt'})
    write_json(d / 'config.json', native_config(arch))
    assert_matches_reference(load(d), rounded(weights), arch)


def _segmentor_extras(C, g):
    """UperNet pyramid inside the backbone plus heads, as in InternVL's ADE20K checkpoints."""
    t = {}
    for name, shape in (('up1.0.weight', (C, C, 2, 2)), ('up1.0.bias', (C,)), ('up1.1.weight', (C,)),
                        ('up1.1.bias', (C,)), ('up1.3.weight', (C, C, 2, 2)), ('up1.3.bias', (C,)),
                        ('up2.0.weight', (C, C, 2, 2)), ('up2.0.bias', (C,))):
        t['backbone.' + name] = torch.randn(shape, generator=g)
    for n in ('weight', 'bias', 'running_mean', 'running_var'):
        t[f'decode_head.fpn_bottleneck.bn.{n}'] = torch.rand(16, generator=g)
    t['decode_head.fpn_bottleneck.bn.num_batches_tracked'] = torch.tensor(100)
    t['decode_head.conv_seg.weight'] = torch.randn(5, 16, 1, 1, generator=g)
    t['decode_head.conv_seg.bias'] = torch.randn(5, generator=g)
    t['auxiliary_head.conv_seg.weight'] = torch.randn(5, 8, 1, 1, generator=g)
    return t


def _mmseg_full_tuning(sd_a, tmp_path):
    """(path, reference weights, arch): pos_embed already resized to the fine-tuning grid (6x6)."""
    arch = dict(TINY, img_size=84)
    weights = dict(sd_a, pos_embed=torch.randn(1, 37, 64, generator=torch.Generator().manual_seed(9)))
    sd = {'backbone.' + k: v.to(torch.bfloat16) for k, v in weights.items()}
    sd.update(_segmentor_extras(64, torch.Generator().manual_seed(10)))
    meta = {'mmseg_version': '0.27.0+', 'mmcv_version': '1.7.0', 'config': 'model = dict(...)',
            'CLASSES': ('wall', 'building', 'sky', 'floor', 'tree'), 'PALETTE': [[120, 120, 120]] * 5,
            'env_info': 'sys.platform: linux', 'seed': 0, 'exp_name': 'upernet.py', 'epoch': 1, 'iter': 80000,
            'time': 'Mon Jan  1 00:00:00 2024', 'hook_msgs': {}}
    path = tmp_path / 'upernet_intern_vit_6b_504_80k_ade20k_bs16_lr4e-5.pth'
    torch.save({'meta': meta, 'state_dict': sd}, path)
    return path, rounded(weights), arch


def test_format_c_mmseg_full_tuning(tmp_path, sd_a):
    path, ref_sd, arch = _mmseg_full_tuning(sd_a, tmp_path)
    assert_matches_reference(load(path, arch), ref_sd, arch)
    assert_matches_reference(pretrained(arch, path), ref_sd, arch)
    m = load_pretrained_into(InternViT(dict(arch), out_indices=(0, -1), attn_backend='math'), path)
    assert_matches_reference(m, ref_sd, arch)


def test_format_c_init_cfg_with_backbone_prefix(tmp_path, sd_a):
    """mmseg's idiom for taking the backbone out of a segmentor checkpoint: prefix='backbone.'.
    The pyramid (``backbone.up1..up4``) sits under that prefix and must be skipped, not refused."""
    path, ref_sd, arch = _mmseg_full_tuning(sd_a, tmp_path)
    assert_matches_reference(pretrained(arch, path, prefix='backbone.'), ref_sd, arch)


def test_format_f_deepspeed_dir(tmp_path, sd_a):
    run = tmp_path / 'work_dirs' / 'upernet_run'

    def save(step, weights):
        (run / f'global_step{step}').mkdir(parents=True)
        module = {'backbone.' + k: v.to(torch.bfloat16) for k, v in weights.items()}
        module.update(_segmentor_extras(64, torch.Generator().manual_seed(step)))
        state = dict(module=module, buffer_names=['decode_head.fpn_bottleneck.bn.running_mean'], optimizer=None,
                     param_shapes=None, frozen_param_shapes=None, shared_params=None, frozen_param_fragments=None,
                     lr_scheduler=None, data_sampler=None, random_ltd=None, sparse_tensor_module_names=set(),
                     skipped_steps=0, global_steps=step, global_samples=16 * step, dp_world_size=8,
                     mp_world_size=1, ds_config={'train_micro_batch_size_per_gpu': 2, 'bf16': {'enabled': True}},
                     ds_version='0.14.4')
        torch.save(state, run / f'global_step{step}' / 'mp_rank_00_model_states.pt')
    save(10, sd_a)
    save(5, {k: v * 0.5 for k, v in sd_a.items()})  # an older step: `latest` must decide
    (run / 'latest').write_text('global_step10')
    assert_matches_reference(load(run, dict(TINY)), rounded(sd_a), TINY)


def test_timm_single_safetensors(tmp_path, sd_ln):
    d = tmp_path / 'vit_intern300m_patch14_448.ogvl_dist'
    d.mkdir()
    save_file({k: v.contiguous() for k, v in sd_ln.items()}, d / 'model.safetensors', metadata={'format': 'pt'})
    write_json(d / 'config.json', {'architecture': 'vit_intern300m_patch14_448', 'num_classes': 0,
                                   'num_features': 48, 'global_pool': 'token',
                                   'pretrained_cfg': {'tag': 'ogvl_dist', 'input_size': [3, 42, 42]}})
    assert_matches_reference(load(d / 'model.safetensors', dict(TINY_LN)), sd_ln, TINY_LN)
    assert_matches_reference(load(d, dict(TINY_LN)), sd_ln, TINY_LN)  # timm's config.json is not an HF one


# ----------------------------------------------------------------------------- 2. strictness
def _save_a(tmp_path, sd, name='intern_vit.pth'):
    path = tmp_path / name
    torch.save({'module': sd}, path)
    return path


def test_renamed_key_is_refused(tmp_path, sd_a):
    sd = dict(sd_a)
    sd['blocks.1.attn.to_qkv.weight'] = sd.pop('blocks.1.attn.qkv.weight')
    with pytest.raises(CheckpointError) as e:
        load(_save_a(tmp_path, sd), dict(TINY))
    assert 'blocks.1.attn.qkv.weight' in str(e.value) and 'blocks.1.attn.to_qkv.weight' in str(e.value)


def test_missing_key_is_refused(tmp_path, sd_a):
    sd = dict(sd_a)
    del sd['blocks.3.ls2.gamma']
    with pytest.raises(CheckpointError, match=r'blocks\.3\.ls2\.gamma'):
        load(_save_a(tmp_path, sd), dict(TINY))


def test_wrong_shape_is_refused(tmp_path, sd_a):
    sd = dict(sd_a, **{'blocks.2.mlp.fc1.weight': torch.randn(161, 64)})
    with pytest.raises(CheckpointError, match=r'blocks\.2\.mlp\.fc1\.weight'):
        load(_save_a(tmp_path, sd), dict(TINY))


def test_index_naming_a_key_its_shard_lacks_is_refused(tmp_path, sd_a):
    d = tmp_path / 'hf'
    write_sharded(d, to_hf(sd_a), 2, 'safetensors')
    write_json(d / 'config.json', hf_config(TINY))
    shard = d / 'model-00002-of-00002.safetensors'
    part = load_file(shard)
    victim = sorted(part)[0]
    del part[victim]
    save_file(part, shard)
    with pytest.raises(CheckpointError) as e:
        load(d)
    msg = str(e.value)
    assert victim.split('.', 2)[-1] in msg or victim in msg, msg


@pytest.mark.parametrize('keep', ['data', 'header'])
def test_truncated_safetensors_is_refused(tmp_path, sd_a, keep):
    path = tmp_path / 'model.safetensors'
    save_file({k: v.contiguous() for k, v in sd_a.items()}, path)
    raw = path.read_bytes()
    path.write_bytes(raw[:len(raw) - 1000] if keep == 'data' else raw[:40])
    with pytest.raises(CheckpointError, match=str(path).replace('.', r'\.')):
        load(path, dict(TINY))


def test_truncated_pth_is_refused(tmp_path, sd_a):
    path = _save_a(tmp_path, sd_a)
    raw = path.read_bytes()
    path.write_bytes(raw[:len(raw) // 2])
    with pytest.raises(CheckpointError, match=str(path).replace('.', r'\.')):
        load(path, dict(TINY))


def test_truncated_bin_shard_is_refused_naming_the_shard(tmp_path, sd_a):
    d = tmp_path / 'hf'
    write_sharded(d, to_hf(sd_a), 2, 'bin')
    write_json(d / 'config.json', hf_config(TINY))
    shard = d / 'pytorch_model-00001-of-00002.bin'
    shard.write_bytes(shard.read_bytes()[:5000])
    with pytest.raises(CheckpointError, match='pytorch_model-00001-of-00002.bin'):
        load(d)


def test_unknown_dtype_name_is_refused(tmp_path, sd_a):
    with pytest.raises(CheckpointError, match='fp8'):
        load(_save_a(tmp_path, sd_a), dict(TINY), dtype='fp8')


# ----------------------------------------------------------------------------- 3. resampling
@pytest.mark.parametrize('how', ['load_backbone', 'init_cfg'])
def test_pos_embed_resampled_to_a_larger_grid(tmp_path, sd_a, how):
    path = _save_a(tmp_path, sd_a)
    big = dict(TINY, img_size=112)  # 4x4 grid -> 8x8
    m = load(path, dict(TINY), img_size=112) if how == 'load_backbone' else pretrained(big, path)
    pe = sd_a['pos_embed']
    grid = pe[:, 1:].reshape(1, 4, 4, 64).permute(0, 3, 1, 2)
    grid = F.interpolate(grid, size=(8, 8), mode='bicubic', align_corners=False, antialias=False)
    expect = torch.cat([pe[:, :1], grid.permute(0, 2, 3, 1).reshape(1, 64, 64)], 1)
    assert m.pos_embed.shape == (1, 65, 64)
    assert torch.equal(m.pos_embed[:, :1], pe[:, :1])
    torch.testing.assert_close(m.pos_embed.detach(), expect, rtol=0, atol=1e-6)
    assert_matches_reference(m, dict(sd_a, pos_embed=expect), big, image(big))


# ----------------------------------------------------------------------------- 4. architecture
def test_tiny_checkpoint_without_config_asks_for_one(tmp_path, sd_a):
    with pytest.raises(CheckpointError, match='config'):
        load_backbone(_save_a(tmp_path, sd_a))


def _shapes(C, ffn, n_blocks, grid, layer_norm):
    def lazy(*shape):
        return LazyTensor(shape, torch.bfloat16, loader=lambda: None)
    sd = {'cls_token': lazy(1, 1, C), 'pos_embed': lazy(1, grid * grid + 1, C),
          'patch_embed.proj.weight': lazy(C, 3, 14, 14), 'patch_embed.proj.bias': lazy(C)}
    for i in range(n_blocks):
        p = f'blocks.{i}.'
        sd.update({p + 'norm1.weight': lazy(C), p + 'norm2.weight': lazy(C), p + 'attn.qkv.weight': lazy(3 * C, C),
                   p + 'attn.proj.weight': lazy(C, C), p + 'attn.proj.bias': lazy(C),
                   p + 'mlp.fc1.weight': lazy(ffn, C), p + 'mlp.fc1.bias': lazy(ffn),
                   p + 'mlp.fc2.weight': lazy(C, ffn), p + 'mlp.fc2.bias': lazy(C),
                   p + 'ls1.gamma': lazy(C), p + 'ls2.gamma': lazy(C)})
        if layer_norm:
            sd.update({p + 'norm1.bias': lazy(C), p + 'norm2.bias': lazy(C), p + 'attn.qkv.bias': lazy(3 * C)})
        else:
            sd.update({p + 'attn.q_norm.weight': lazy(C), p + 'attn.k_norm.weight': lazy(C)})
    return sd


_6B = dict(embed_dims=3200, num_heads=25, feedforward_channels=12800, norm_type='rms_norm',
           qk_normalization=True, qkv_bias=False, patch_size=14)


@pytest.mark.parametrize('n_blocks,grid,img_size', [(48, 16, 224), (45, 32, 448)])
def test_infer_arch_from_6b_shapes(n_blocks, grid, img_size):
    arch = infer_arch(_shapes(3200, 12800, n_blocks, grid, layer_norm=False))
    assert {k: arch[k] for k in _6B} == _6B
    assert (arch['num_layers'], arch['img_size']) == (n_blocks, img_size)


def test_infer_arch_from_300m_shapes():
    arch = infer_arch(_shapes(1024, 4096, 24, 32, layer_norm=True))
    assert (arch['num_heads'], arch['num_layers'], arch['img_size'], arch['norm_type'], arch['qkv_bias'],
            arch['qk_normalization']) == (16, 24, 448, 'layer_norm', True, False)


def test_arch_from_released_hf_configs():
    six_b = hf_config(dict(_6B, num_layers=48, img_size=224))
    assert 'norm_type' not in six_b
    arch = arch_from_hf_config(six_b)
    assert {k: arch[k] for k in _6B} == _6B and (arch['num_layers'], arch['img_size']) == (48, 224)
    m300 = hf_config(dict(embed_dims=1024, num_heads=16, feedforward_channels=4096, norm_type='layer_norm',
                          qk_normalization=False, qkv_bias=True, patch_size=14, num_layers=24, img_size=448))
    arch = arch_from_hf_config(m300)
    assert (arch['num_heads'], arch['norm_type'], arch['qkv_bias'], arch['qk_normalization']) == \
        (16, 'layer_norm', True, False)


# ----------------------------------------------------------------------------- 5. security
class _Custom:
    pass


class _Payload:
    """Unpickling this would run ``touch MARKER`` (harmless; proves whether code ran)."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return os.system, (f'touch {self.marker}',)


@pytest.mark.parametrize('payload', ['argparse_namespace', 'custom_class', 'os_system'])
def test_pickle_with_arbitrary_global_is_refused(tmp_path, sd_a, payload):
    # (collections.Counter is on torch's own weights-only allow-list, so it is no test of perception)
    marker = tmp_path / 'MARKER'
    extra = {'argparse_namespace': argparse.Namespace(lr=4e-5), 'custom_class': _Custom(),
             'os_system': _Payload(marker)}[payload]
    path = tmp_path / 'evil.pth'
    torch.save({'state_dict': sd_a, 'extra': extra}, path)
    with pytest.raises(CheckpointError, match='refusing') as e:
        load(path, dict(TINY))
    assert str(path) in str(e.value)
    assert not marker.exists()


def test_refusal_names_the_refused_global(tmp_path, sd_a):
    """The user must learn WHICH object blocked the load (here argparse.Namespace, common in
    training checkpoints), not only torch's generic first line."""
    path = tmp_path / 'train_args.pth'
    torch.save({'model': sd_a, 'args': argparse.Namespace(lr=4e-5)}, path)
    with pytest.raises(CheckpointError, match='refusing') as e:
        load(path, dict(TINY))
    assert 'argparse.Namespace' in str(e.value), str(e.value)


def _mmengine_checkpoint(tmp_path, sd_a):
    from mmengine.logging import MessageHub
    from mmengine.optim.scheduler import PolyLR
    seg = torch.nn.Module()
    seg.backbone = InternViT(dict(TINY))
    seg.backbone.load_state_dict(sd_a)
    seg.decode_head = torch.nn.Module()
    seg.decode_head.conv_seg = torch.nn.Conv2d(64, 5, 1)
    opt = torch.optim.AdamW(seg.decode_head.parameters(), lr=4e-5)
    seg.decode_head.conv_seg(torch.randn(1, 64, 2, 2)).sum().backward()
    opt.step()
    sched = PolyLR(opt, eta_min=0, power=1.0, begin=0, end=80000, by_epoch=False)
    hub = MessageHub.get_instance('test_checkpoint_formats')
    hub.update_scalar('train/loss', 0.5)
    hub.update_scalar('train/loss', np.float64(0.25))
    hub.update_info('best_mIoU', np.float32(0.47))
    ckpt = {'meta': {'epoch': 0, 'iter': 100, 'cfg': 'model = dict(type="EncoderDecoder")', 'seed': 42,
                     'experiment_name': 'x', 'time': '20250101_000000', 'mmengine_version': '0.10.7',
                     'dataset_meta': {'classes': ('wall', 'building'), 'palette': [[120, 120, 120], [180, 120, 120]]}},
            'state_dict': seg.state_dict(), 'message_hub': hub.state_dict(), 'optimizer': opt.state_dict(),
            'param_schedulers': [sched.state_dict()]}
    path = tmp_path / 'iter_100.pth'
    torch.save(ckpt, path)
    return path


def test_mmengine_checkpoint_loads_weights_only(tmp_path, sd_a):
    from mmengine.logging.history_buffer import HistoryBuffer
    from perception.checkpoint import torch_load
    path = _mmengine_checkpoint(tmp_path, sd_a)
    obj, _ = torch_load(path)
    buf = obj['message_hub']['log_scalars']['train/loss']
    assert isinstance(buf, HistoryBuffer) and buf.current() == 0.25 and buf.mean() == 0.375
    assert obj['message_hub']['runtime_info']['best_mIoU'] == np.float32(0.47)
    m = load(path, dict(TINY))
    for k, v in sd_a.items():
        assert torch.equal(m.state_dict()[k], v), k


def test_mmengine_checkpoint_plain_torch_load_after_import(tmp_path, sd_a):
    path = _mmengine_checkpoint(tmp_path, sd_a)
    code = ('import sys, torch, perception\n'
            'obj = torch.load(sys.argv[1], weights_only=True)\n'
            'print(type(obj["message_hub"]["log_scalars"]["train/loss"]).__name__, obj["meta"]["iter"])\n')
    r = subprocess.run([sys.executable, '-c', code, str(path)], cwd=ROOT, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.split()[-2:] == ['HistoryBuffer', '100']


# ----------------------------------------------------------------------------- 6. conversion
def _b_dir(tmp_path, sd_a):
    d = tmp_path / 'InternViT-6B-448px-V2_5'
    write_sharded(d, to_hf(bf16(sd_a)), 3, 'safetensors')
    write_json(d / 'config.json', hf_config(TINY))
    return d


@pytest.mark.parametrize('source', ['hf_dir', 'format_a_pth'])
def test_convert_round_trip(tmp_path, sd_a, source):
    from perception.checkpoint.convert import convert_checkpoint
    if source == 'hf_dir':
        src, config = _b_dir(tmp_path, sd_a), None
    else:
        src, config = _save_a(tmp_path, bf16(sd_a)), dict(TINY)
    dst = tmp_path / 'out' / 'internvit.safetensors'
    convert_checkpoint(src, dst, config=config)
    written = load_file(dst)
    assert set(written) == set(sd_a)
    for k, v in written.items():
        assert torch.equal(v.float(), rounded(sd_a)[k]), k
    a, b = load(src, config), load(dst)  # the converted file carries its arch: no config
    img = image(TINY)
    with torch.no_grad():
        assert all(torch.equal(x, y) for x, y in zip(a(img), b(img)))
    assert_matches_reference(b, rounded(sd_a), TINY)


class _Boom(RuntimeError):
    pass


@pytest.mark.parametrize('existing', [False, True])
def test_failed_conversion_leaves_no_file(tmp_path, sd_a, monkeypatch, existing):
    from perception.checkpoint.convert import convert_checkpoint
    src = _b_dir(tmp_path, sd_a)
    out = tmp_path / 'out'
    out.mkdir()
    dst = out / 'internvit.safetensors'
    if existing:
        dst.write_bytes(b'previous conversion')
    calls, seen = [0], []
    orig = LazyTensor.load

    def failing_load(self):
        calls[0] += 1
        if calls[0] == 20:
            seen.append(sorted(os.listdir(out)))
            raise _Boom('disk on fire')
        return orig(self)
    monkeypatch.setattr(LazyTensor, 'load', failing_load)
    with pytest.raises((_Boom, CheckpointError)):
        convert_checkpoint(src, dst, overwrite=existing)  # replacing a file is asked for explicitly
    assert seen, 'the write never reached the 20th tensor'
    assert len(seen[0]) > (1 if existing else 0), f'failure was not mid-write: {seen[0]}'
    assert sorted(os.listdir(out)) == (['internvit.safetensors'] if existing else [])
    if existing:
        assert dst.read_bytes() == b'previous conversion'


def test_checkpoint_info(tmp_path, sd_a):
    from perception.checkpoint.convert import checkpoint_info
    n = sum(v.numel() for v in sd_a.values())
    info = checkpoint_info(_b_dir(tmp_path, sd_a))
    assert info['format'] == 'hf'
    assert info['num_params'] == n
    assert info['dtypes'] == {'bfloat16': n}
    sd = dict(sd_a, **clip_projector(64, torch.Generator().manual_seed(5)))
    info = checkpoint_info(_save_a(tmp_path, sd))
    assert info['format'] == 'internvit'
    assert info['num_params'] == n  # clip_projector is not part of the backbone
    assert info['dtypes'] == {'float32': sum(v.numel() for v in sd.values())}


def test_a_patch_size_that_contradicts_the_weights_is_refused_unless_asked(tmp_path, sd_a, monkeypatch):
    """config.json says patch_size 16 for 14-pixel kernels: refused (the kernel would be resampled and
    the outputs change without a word); patch_size=16 asked explicitly: resampled, with a warning."""
    d = tmp_path / 'InternViT-6B-448px-V2_5'
    write_sharded(d, to_hf(bf16(sd_a)), 2, 'safetensors')
    write_json(d / 'config.json', hf_config(dict(TINY, patch_size=16, img_size=64)))
    with pytest.raises(CheckpointError, match=r'kernel is 14x14 but the architecture read with it says '
                                              r'patch_size 16'):
        load_backbone(d)
    import perception.checkpoint.loader as loader
    said = []
    monkeypatch.setattr(loader, 'print_log', lambda msg, *a, **k: said.append((msg, k.get('level'))))
    vit = load_backbone(d, patch_size=16, img_size=64, dtype='fp32')
    assert vit.patch_embed.proj.weight.shape[-1] == 16
    assert any('resampling the 14x14 patch-embedding kernel to 16x16' in m and lvl == 30 for m, lvl in said), said


def test_conversion_never_replaces_what_it_was_not_asked_to(tmp_path, sd_a):
    from perception.checkpoint.convert import convert_checkpoint
    src = _b_dir(tmp_path, sd_a)
    dst = tmp_path / 'mine.safetensors'
    dst.write_bytes(b'a file of the user')
    with pytest.raises(CheckpointError, match=r'mine\.safetensors exists: pass --force'):
        convert_checkpoint(src, dst)
    assert dst.read_bytes() == b'a file of the user'
    with pytest.raises(CheckpointError, match=r'is the source .* or inside it'):
        convert_checkpoint(src, src / 'model.safetensors', overwrite=True)
    with pytest.raises(CheckpointError, match=r'is a folder'):
        convert_checkpoint(src, tmp_path, overwrite=True)
    convert_checkpoint(src, dst, overwrite=True)
    assert load_file(dst).keys() == sd_a.keys()
