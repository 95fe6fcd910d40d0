"""InternVL-C / InternVL-G (``perception.load_internvl_clip``) against an independent re-computation of the
release's formulas (``benchmarks/reference_internvl.py``), on tiny configs whose every parameter is drawn
away from its initial value, loaded from both released layouts written here in the release's key names."""
import json

import pytest
import torch
from safetensors.torch import save_file

import perception
from benchmarks import reference_internvl as ref
from perception.checkpoint import CheckpointError, LazyTensor
from perception.checkpoint.internvl_clip import clip_config

VISION = dict(embed_dims=48, num_layers=2, num_heads=4, feedforward_channels=96, norm_type='rms_norm',
              qk_normalization=True, qkv_bias=False, patch_size=14, img_size=42, layer_scale_init=0.1, norm_eps=1e-6)
CFG = dict(vision=VISION, vocab_size=50, hidden_size=64, num_layers=4, num_heads=4, intermediate_size=96,
           rms_norm_eps=1e-6, cross_attention_frequency=2, num_query_token=6, clip_embed_dim=32,
           attn_pool_num_heads=4)
IDS = torch.tensor([[1, 7, 9, 23, 5, 2, 0, 0, 0],
                    [1, 4, 2, 0, 0, 0, 0, 0, 0],
                    [1, 11, 12, 13, 14, 15, 16, 17, 2],
                    [1, 8, 0, 9, 2, 0, 0, 0, 0]])  # an inner <unk> (id 0): masked and shifts the read position


def release_shapes(cfg=CFG):
    """Every tensor of InternVL-14B-224px's ``model.safetensors`` for ``cfg``, in the release's names."""
    v, C, H, V = cfg['vision'], cfg['vision']['embed_dims'], cfg['hidden_size'], cfg['vocab_size']
    g, p, E, Q, I = v['img_size'] // v['patch_size'], v['patch_size'], cfg['clip_embed_dim'], cfg['num_query_token'], \
        cfg['intermediate_size']
    s = {'vision_model.embeddings.class_embedding': (1, 1, C),
         'vision_model.embeddings.position_embedding': (1, 1 + g * g, C),
         'vision_model.embeddings.patch_embedding.weight': (C, 3, p, p),
         'vision_model.embeddings.patch_embedding.bias': (C,)}
    for i in range(v['num_layers']):
        b = f'vision_model.encoder.layers.{i}.'
        s.update({b + 'norm1.weight': (C,), b + 'norm2.weight': (C,), b + 'attn.qkv.weight': (3 * C, C),
                  b + 'attn.q_norm.weight': (C,), b + 'attn.k_norm.weight': (C,), b + 'attn.proj.weight': (C, C),
                  b + 'attn.proj.bias': (C,), b + 'mlp.fc1.weight': (v['feedforward_channels'], C),
                  b + 'mlp.fc1.bias': (v['feedforward_channels'],),
                  b + 'mlp.fc2.weight': (C, v['feedforward_channels']),
                  b + 'mlp.fc2.bias': (C,), b + 'ls1': (C,), b + 'ls2': (C,)})
    s['qllama.model.embed_tokens.weight'] = (V, H)
    for i in range(cfg['num_layers']):
        b = f'qllama.model.layers.{i}.'
        s.update({b + f'self_attn.{n}_proj.weight': (H, H) for n in 'qkvo'})
        s.update({b + 'self_attn.rotary_emb.inv_freq': (H // cfg['num_heads'] // 2,),
                  b + 'mlp.gate_proj.weight': (I, H), b + 'mlp.up_proj.weight': (I, H),
                  b + 'mlp.down_proj.weight': (H, I),
                  b + 'input_layernorm.weight': (H,), b + 'post_attention_layernorm.weight': (H,)})
        if i % cfg['cross_attention_frequency'] == 0:
            s.update({b + 'cross_attn.q_proj.weight': (H, H), b + 'cross_attn.o_proj.weight': (H, H),
                      b + 'cross_attn.k_proj.weight': (H, C), b + 'cross_attn.v_proj.weight': (H, C),
                      b + 'cross_attn.norm1.weight': (H,), b + 'cross_attn.norm2.weight': (C,)})
    s.update({'qllama.model.norm.weight': (H,), 'qllama.lm_head.weight': (V, H), 'query_tokens': (1, Q, H),
              'text_projection': (H, E), 'logit_scale': (), 'itm_head.weight': (2, H), 'itm_head.bias': (2,)})
    for name, d in (('clip_projector', C), ('clip_projector2', H)):
        s.update({f'{name}.{n}.{w}': (d,) for n in ('norm1_q', 'norm1_k', 'norm1_v') for w in ('weight', 'bias')})
        s.update({f'{name}.cross_attn.{n}.weight': (d, d) for n in 'qkv'})
        s.update({f'{name}.cross_attn.{n}_bias': (d,) for n in 'qkv'})
        s.update({f'{name}.cross_attn.proj.weight': (E, d), f'{name}.cross_attn.proj.bias': (E,)})
    return s


def random_release_state(cfg=CFG, seed=0):
    """Random weights far from any init: matrices ~ N(0, 1/fan_in), norm weights in [0.5, 1.5], biases and
    layer scales nonzero; the rotary frequencies as old transformers saved them."""
    gen = torch.Generator().manual_seed(seed)
    sd = {}
    for k, shape in release_shapes(cfg).items():
        if k.endswith('inv_freq'):
            d = 2 * shape[0]
            sd[k] = 1.0 / (10000 ** (torch.arange(0, d, 2).float() / d))
        elif len(shape) >= 2 and 'embed' not in k and k != 'query_tokens':
            sd[k] = torch.randn(shape, generator=gen) / shape[-1] ** 0.5 if len(shape) == 2 else \
                torch.randn(shape, generator=gen) / (shape[1] * shape[2] * shape[3]) ** 0.5
        elif 'norm' in k and k.endswith('weight'):
            sd[k] = 0.5 + torch.rand(shape, generator=gen)
        elif k.endswith(('ls1', 'ls2')):
            sd[k] = 0.2 + 0.6 * torch.rand(shape, generator=gen)
        else:
            sd[k] = torch.randn(shape, generator=gen) * (0.3 if len(shape) <= 1 else 1.0)
    return sd


def hf_config(cfg=CFG):
    v = cfg['vision']
    return {'model_type': 'internvl', 'clip_embed_dim': cfg['clip_embed_dim'],
            'attn_pool_num_heads': cfg['attn_pool_num_heads'], 'num_query_token': cfg['num_query_token'],
            'cross_attention_frequency': cfg['cross_attention_frequency'], 'use_backbone_lora': 0,
            'use_qllama_lora': 0, 'force_image_size': None,
            'vision_config': {'hidden_size': v['embed_dims'], 'num_hidden_layers': v['num_layers'],
                              'num_attention_heads': v['num_heads'], 'intermediate_size': v['feedforward_channels'],
                              'image_size': v['img_size'], 'patch_size': v['patch_size'], 'qkv_bias': False,
                              'qk_normalization': True, 'layer_norm_eps': 1e-6, 'initializer_factor': 0.1},
            'qllama_config': {'vocab_size': cfg['vocab_size'], 'hidden_size': cfg['hidden_size'],
                              'num_hidden_layers': cfg['num_layers'], 'num_attention_heads': cfg['num_heads'],
                              'intermediate_size': cfg['intermediate_size'], 'rms_norm_eps': 1e-6,
                              'hidden_act': 'silu'}}


def write_hf_folder(d, sd, config=None):
    """The InternVL-14B-224px layout: config.json, two safetensors shards and their index."""
    d.mkdir(parents=True, exist_ok=True)
    names = sorted(sd)
    shards = [names[:len(names) // 2], names[len(names) // 2:]]
    weight_map = {}
    for i, part in enumerate(shards):
        fname = f'model-0000{i + 1}-of-00002.safetensors'
        save_file({k: sd[k].contiguous() for k in part}, str(d / fname), metadata={'format': 'pt'})
        weight_map.update({k: fname for k in part})
    total = sum(t.numel() * t.element_size() for t in sd.values())
    (d / 'model.safetensors.index.json').write_text(json.dumps({'metadata': {'total_size': total},
                                                                'weight_map': weight_map}))
    (d / 'config.json').write_text(json.dumps(config or hf_config()))
    return d


def stage1_state(sd):
    """``internvl_c_13b_224px.pth``'s names: the ViT in the original layout at the top level, the text tower
    a plain LlamaModel under ``transformer.``, no queries / cross-attention / clip_projector2 / heads."""
    out = dict(ref.vit_state(sd))
    for k, v in sd.items():
        if k.startswith('qllama.model.') and '.cross_attn.' not in k:
            out['transformer.' + k[len('qllama.model.'):]] = v
        elif k in ('text_projection', 'logit_scale') or k.startswith('clip_projector.'):
            out[k] = v
    return out


@pytest.fixture(scope='module')
def release(tmp_path_factory):
    torch.manual_seed(0)
    sd = random_release_state()
    d = write_hf_folder(tmp_path_factory.mktemp('internvl') / 'InternVL-14B-224px', sd)
    px = torch.randn(2, 3, 42, 42)
    with torch.no_grad():
        want = {'text': ref.encode_text(sd, IDS, CFG), 'C': ref.encode_image(sd, px, 'InternVL-C', CFG),
                'G': ref.encode_image(sd, px, 'InternVL-G', CFG)}
    return sd, d, px, want


def close(got, want, rel=1e-5):
    err = (got.float() - want.float()).abs().max().item()
    scale = want.float().abs().max().item()
    assert err <= rel * scale, f'max error {err:.3g} > {rel:g} x scale {scale:.3g}'


def test_hf_folder_matches_release_formulas_fp32(release):
    sd, d, px, want = release
    model = perception.load_internvl_clip(d, mode='InternVL-G', dtype='fp32')
    with torch.no_grad():
        close(model.encode_text(IDS), want['text'])
        close(model.encode_image(px, mode='InternVL-C'), want['C'])
        close(model.encode_image(px, mode='InternVL-G'), want['G'])
        close(model.encode_image_tokens(model.vision_tokens(px), 'InternVL-G'), want['G'])
    # the embeddings are not trivially equal: C and G differ, texts differ, padding changes the text
    assert (want['C'] / want['C'].norm(dim=1, keepdim=True) - want['G']).abs().max() > 1e-2
    assert (want['text'][0] - want['text'][1]).abs().max() > 1e-2


def test_padding_is_masked_and_the_last_real_token_is_read(release):
    sd, d, _, want = release
    model = perception.load_internvl_clip(d, parts=('text',), dtype='fp32')
    longer = torch.cat([IDS[1:2, :3], torch.zeros(1, 20, dtype=torch.long)], 1)  # more padding: same embedding
    with torch.no_grad():
        close(model.encode_text(longer)[0], want['text'][1])
        changed = model.encode_text(torch.tensor([[1, 4, 3, 0]]))[0]
    assert (changed - want['text'][1]).abs().max() > 1e-3
    for bad, msg in ((torch.zeros(1, 4, dtype=torch.long), 'only padding'), (torch.tensor([[1, 50, 2]]), r'\[0, 50\)'),
                     (torch.ones(2, 3), 'integer')):
        with pytest.raises(ValueError, match=msg):
            model.encode_text(bad)


def test_stage1_pth_loads_strictly_and_gives_the_same_c_embeddings(release, tmp_path):
    sd, d, px, want = release
    p = tmp_path / 'internvl_c_13b_224px.pth'
    torch.save(stage1_state(sd), p)
    model = perception.load_internvl_clip(p, mode='InternVL-C', dtype='fp32', config=CFG)
    assert model.clip_projector2 is None and model.query_tokens is None
    with torch.no_grad():
        close(model.encode_text(IDS), want['text'])
        close(model.encode_image(px, mode='InternVL-C'), want['C'])
    with pytest.raises(CheckpointError, match='no InternVL-G queries'):
        perception.load_internvl_clip(p, mode='InternVL-G', config=CFG)


def test_bf16_stays_close_to_the_fp32_formulas(release):
    sd, d, px, want = release
    model = perception.load_internvl_clip(d, mode='InternVL-G', dtype='bf16')
    assert all(p.dtype == torch.bfloat16 for p in model.parameters())
    with torch.no_grad():
        for got, w in ((model.encode_text(IDS), want['text']), (model.encode_image(px, 'InternVL-C'), want['C']),
                       (model.encode_image(px, 'InternVL-G'), want['G'])):
            cos = torch.nn.functional.cosine_similarity(got, w.float(), dim=1)
            assert got.dtype == torch.float32 and cos.min() > 0.99, cos


def test_each_phase_holds_only_what_it_runs(release):
    _, d, px, _ = release
    names = {}
    for parts in (('text',), ('vision',), ('queries',), ('text', 'vision'), ('text', 'vision', 'queries')):
        model = perception.load_internvl_clip(d, parts=parts, dtype='fp32')
        names[parts] = set(model.state_dict())
    every = set().union(*names.values())
    assert not any(k.startswith(('qllama.lm_head', 'itm_head', 'lm_head')) or 'inv_freq' in k for k in every)
    text = names[('text',)]
    assert 'qllama.embed_tokens.weight' in text and 'text_projection' in text
    assert not any(k.startswith(('vision.', 'clip_projector', 'query_tokens')) or '.cross_attn.' in k for k in text)
    assert any(k.startswith('qllama.layers.0.self_attn') for k in text)
    vision = names[('vision',)]
    assert 'vision.pos_embed' in vision and 'clip_projector.cross_attn.q_bias' in vision
    assert not any(k.startswith(('qllama.', 'clip_projector2.', 'text_projection', 'query_tokens')) for k in vision)
    queries = names[('queries',)]
    assert 'query_tokens' in queries and 'qllama.layers.0.cross_attn.k_proj.weight' in queries
    assert 'qllama.layers.1.cross_attn.k_proj.weight' not in queries  # every second layer only
    assert not any(k.startswith(('vision.', 'qllama.embed_tokens', 'text_projection')) for k in queries)
    # InternVL-C's default parts: no queries, cross-attention or second projector
    assert names[('text', 'vision')] == text | vision
    assert not any(k.startswith(('qllama.layers.0.cross_attn', 'query_tokens', 'clip_projector2'))
                   for k in names[('text', 'vision')])
    model = perception.load_internvl_clip(d, parts=('text',), dtype='fp32')
    with pytest.raises(RuntimeError, match="'vision' part"):
        model.encode_image(px)


def test_g_in_phases_from_cached_vit_tokens(release):
    _, d, px, want = release
    with torch.no_grad():
        tokens = perception.load_internvl_clip(d, parts=('vision',), dtype='fp32').vision_tokens(px)
        g = perception.load_internvl_clip(d, parts=('queries',), dtype='fp32').encode_image_tokens(tokens, 'InternVL-G')
    close(g, want['G'])


def _edit(sd, drop=(), add=None, change=None):
    out = {k: v for k, v in sd.items() if k not in drop}
    out.update(add or {})
    out.update(change or {})
    return out


@pytest.mark.parametrize('case, pattern', [
    ('bare_vit', 'without the InternVL text tower'),
    ('missing', r'missing keys: qllama\.layers\.3\.mlp\.up_proj\.weight'),
    ('unexpected', 'unexpected keys: extra_head.weight'),
    ('shape', r'text_projection: checkpoint \(64, 16\) vs model \(64, 32\)'),
    ('inv_freq', 'rotary frequency'),
    ('lora', 'use_backbone_lora=8'),
])
def test_bad_checkpoints_are_refused_naming_the_problem(release, tmp_path, case, pattern):
    sd = release[0]
    cfg = hf_config()
    if case == 'bare_vit':
        sd = {k: v for k, v in sd.items() if k.startswith('vision_model.')}
    elif case == 'missing':
        sd = _edit(sd, drop=('qllama.model.layers.3.mlp.up_proj.weight',))
    elif case == 'unexpected':
        sd = _edit(sd, add={'extra_head.weight': torch.zeros(2, 2)})
    elif case == 'shape':
        sd = _edit(sd, change={'text_projection': torch.zeros(64, 16)})
    elif case == 'inv_freq':
        sd = _edit(sd, change={'qllama.model.layers.0.self_attn.rotary_emb.inv_freq': torch.ones(8)})
    else:
        cfg['use_backbone_lora'] = 8
    d = write_hf_folder(tmp_path / case, sd, cfg)
    with pytest.raises(CheckpointError, match=pattern) as e:
        perception.load_internvl_clip(d, mode='InternVL-C', dtype='fp32')
    assert '\n' not in str(e.value)


def test_a_bare_internvit_file_names_the_missing_text_tower(release, tmp_path):
    p = tmp_path / 'intern_vit_6b_224px.pth'
    torch.save({'module': ref.vit_state(release[0])}, p)
    with pytest.raises(CheckpointError, match=r"without the InternVL text tower: missing QLLaMA \('qllama"):
        perception.load_internvl_clip(p, config=CFG)


def test_bad_arguments_are_refused(release):
    d = release[1]
    with pytest.raises(ValueError, match='mode must be one of'):
        perception.load_internvl_clip(d, mode='InternVL-X')
    with pytest.raises(ValueError, match='parts must be'):
        perception.load_internvl_clip(d, parts=('lm_head',))
    with pytest.raises(CheckpointError, match="unknown dtype 'int8'"):
        perception.load_internvl_clip(d, dtype='int8')
    model = perception.load_internvl_clip(d, parts=('vision',), dtype='fp32')
    with pytest.raises(ValueError, match='mode must be one of'):
        model.encode_image(torch.zeros(1, 3, 42, 42), mode='C')
    with pytest.raises(RuntimeError, match="'queries' part"):
        model.encode_image(torch.zeros(1, 3, 42, 42), mode='InternVL-G')


def test_the_14b_shapes_give_the_released_architecture():
    """The stage-1 file carries no config: the architecture is read from the shapes (lazy, nothing read)."""
    real = dict(CFG, vision=dict(VISION, embed_dims=3200, num_layers=48, feedforward_channels=12800, img_size=224),
                vocab_size=49954, hidden_size=4096, num_layers=32, intermediate_size=11008, clip_embed_dim=768)
    shapes = {k: v for k, v in release_shapes(real).items() if k.startswith('vision_model.')}
    vit = ref.vit_state({k: LazyTensor(s, torch.bfloat16, None) for k, s in shapes.items()})
    sd = {'vision.' + k: v for k, v in vit.items()}
    sd.update({'qllama.embed_tokens.weight': LazyTensor((49954, 4096), torch.bfloat16, None),
               'qllama.layers.31.mlp.gate_proj.weight': LazyTensor((11008, 4096), torch.bfloat16, None),
               'qllama.layers.0.mlp.gate_proj.weight': LazyTensor((11008, 4096), torch.bfloat16, None),
               'text_projection': LazyTensor((4096, 768), torch.bfloat16, None)})
    cfg = clip_config(sd, None, 'internvl_c_13b_224px.pth')
    assert cfg['vision']['num_layers'] == 48 and cfg['vision']['num_heads'] == 25 and cfg['vision']['img_size'] == 224
    assert (cfg['vocab_size'], cfg['hidden_size'], cfg['num_layers'], cfg['num_heads'], cfg['intermediate_size'],
            cfg['clip_embed_dim']) == (49954, 4096, 32, 32, 11008, 768)
    from perception.models.internvl_clip import CONFIG_14B, InternVLCLIP
    with torch.device('meta'):
        model = InternVLCLIP(CONFIG_14B)
    n = sum(p.numel() for p in model.parameters())
    lm_itm = 49954 * 4096 + 2 * 4096 + 2
    assert n + lm_itm == pytest.approx(13.8e9, rel=0.01)  # the release's 13.8 B parameters
