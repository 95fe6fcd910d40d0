"""InternViTAdapter (InternVL-MMDetSeg's ViT-Adapter around InternViT): the fork's parameter names, parity
with an independent re-computation of the fork's forward (benchmarks/reference_adapter.py), strides,
freezing, activation checkpointing, the deformable-attention paths, loading, and the refusals."""
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from benchmarks import reference_adapter as ref_adapter
from conftest import randomize_
from perception.checkpoint.errors import CheckpointError
from perception.layers.deform_attn import MSDeformAttn, grid_reference_points, ms_deform_attn_pytorch
from perception.models import InternViTAdapter

ROOT = Path(__file__).resolve().parents[1]

ARCH = dict(embed_dims=48, num_layers=4, num_heads=4, feedforward_channels=96, norm_type='rms_norm',
            qk_normalization=True, qkv_bias=False, patch_size=16, img_size=64)
INDEXES = [[0, 0], [1, 1], [2, 2], [3, 3]]
KW = dict(interaction_indexes=INDEXES, conv_inplane=8, deform_num_heads=4, deform_ratio=0.5, cffn_ratio=0.25)


def tiny(**kw):
    return InternViTAdapter(dict(ARCH), **dict(KW, **kw))


def _scale_err(a, b):
    return ((a - b).abs().max() / b.abs().max()).item()


def perturbed(m, seed=0):
    """Every parameter away from its init (the fork's zero gamma would hide a broken injector); larger
    sampling offsets so that points fall outside the maps (zero padding)."""
    randomize_(m, seed=seed)
    with torch.no_grad():
        for name, p in m.named_parameters():
            if 'sampling_offsets' in name:
                p.mul_(3)
    return m


# ----------------------------------------------------------------------------- the fork's layout
def fork_state_shapes(C=48, depth=4, ffn=96, heads=4, grid=4, inplane=8, dheads=4, points=4, ratio=0.5,
                      cffn=0.25, n_inter=4, patch=16):
    """Key -> shape of the fork's InternViTAdapter (vit_adapter.py, adapter_modules.py, intern_vit_6b.py,
    ms_deform_attn.py) for an rms_norm / qk-norm / no-qkv-bias ViT, read off its constructors."""
    s = {'pos_embed': (1, grid * grid + 1, C), 'patch_embed.proj.weight': (C, 3, patch, patch),
         'patch_embed.proj.bias': (C,), 'level_embed': (3, C)}  # cls_token = None: not in the state dict
    for i in range(depth):
        p = f'blocks.{i}.'
        s.update({p + 'norm1.weight': (C,), p + 'norm2.weight': (C,), p + 'attn.qkv.weight': (3 * C, C),
                  p + 'attn.q_norm.weight': (C,), p + 'attn.k_norm.weight': (C,), p + 'attn.proj.weight': (C, C),
                  p + 'attn.proj.bias': (C,), p + 'ls1.gamma': (C,), p + 'ls2.gamma': (C,),
                  p + 'mlp.fc1.weight': (ffn, C), p + 'mlp.fc1.bias': (ffn,), p + 'mlp.fc2.weight': (C, ffn),
                  p + 'mlp.fc2.bias': (C,)})
    for k, (cin, cout) in {'stem.0': (3, inplane), 'stem.3': (inplane, inplane), 'stem.6': (inplane, inplane),
                           'conv2.0': (inplane, 2 * inplane), 'conv3.0': (2 * inplane, 4 * inplane),
                           'conv4.0': (4 * inplane, 4 * inplane)}.items():
        s[f'spm.{k}.weight'] = (cout, cin, 3, 3)
        norm = k[:-1] + str(int(k[-1]) + 1)
        s[f'spm.{norm}.weight'] = s[f'spm.{norm}.bias'] = (cout,)
    for i, cin in enumerate((inplane, 2 * inplane, 4 * inplane, 4 * inplane), 1):
        s[f'spm.fc{i}.weight'], s[f'spm.fc{i}.bias'] = (C, cin, 1, 1), (C,)
    vd, hid = int(C * ratio), int(C * cffn)

    def attn(p, levels):
        s.update({p + 'sampling_offsets.weight': (dheads * levels * points * 2, C),
                  p + 'sampling_offsets.bias': (dheads * levels * points * 2,),
                  p + 'attention_weights.weight': (dheads * levels * points, C),
                  p + 'attention_weights.bias': (dheads * levels * points,),
                  p + 'value_proj.weight': (vd, C), p + 'value_proj.bias': (vd,),
                  p + 'output_proj.weight': (C, vd), p + 'output_proj.bias': (C,)})

    def extractor(p):
        for n in ('query_norm', 'feat_norm', 'ffn_norm'):
            s[f'{p}{n}.weight'] = s[f'{p}{n}.bias'] = (C,)
        attn(p + 'attn.', 1)
        s.update({p + 'ffn.fc1.weight': (hid, C), p + 'ffn.fc1.bias': (hid,),
                  p + 'ffn.dwconv.dwconv.weight': (hid, 1, 3, 3), p + 'ffn.dwconv.dwconv.bias': (hid,),
                  p + 'ffn.fc2.weight': (C, hid), p + 'ffn.fc2.bias': (C,)})
    for i in range(n_inter):
        p = f'interactions.{i}.injector.'
        s[p + 'gamma'] = (C,)
        for n in ('query_norm', 'feat_norm'):
            s[f'{p}{n}.weight'] = s[f'{p}{n}.bias'] = (C,)
        attn(p + 'attn.', 3)
        extractor(f'interactions.{i}.extractor.')
    for k in range(2):
        extractor(f'interactions.{n_inter - 1}.extra_extractors.{k}.')
    s['up.weight'], s['up.bias'] = (C, C, 2, 2), (C,)
    for i in range(1, 5):
        s[f'norm{i}.weight'] = s[f'norm{i}.bias'] = (C,)
    return s


def test_state_dict_is_the_forks_key_for_key():
    got = {k: tuple(v.shape) for k, v in tiny().state_dict().items()}
    expect = fork_state_shapes()
    assert sorted(set(expect) - set(got)) == [] and sorted(set(got) - set(expect)) == []
    assert {k: v for k, v in got.items() if expect[k] != v} == {}


def test_deform_attn_init_is_deformable_detrs():
    a = MSDeformAttn(48, n_levels=3, n_heads=4, n_points=4, ratio=0.5)
    expect = []
    for h in range(4):  # ring of directions scaled to the unit square, point i at i + 1
        t = 2 * math.pi * h / 4
        d = torch.tensor([math.cos(t), math.sin(t)])
        d = d / d.abs().max()
        expect += [d * (i + 1) for _ in range(3) for i in range(4)]
    assert torch.allclose(a.sampling_offsets.bias, torch.stack(expect).reshape(-1), atol=1e-6)
    assert not a.sampling_offsets.weight.any() and not a.attention_weights.weight.any()
    assert not a.attention_weights.bias.any() and not a.value_proj.bias.any() and not a.output_proj.bias.any()


def test_fork_init_of_the_adapter():
    m = tiny(init_values=0.25)
    assert all(torch.all(blk.injector.gamma == 0.25) for blk in m.interactions)
    assert m.level_embed.std() > 0.5 and m.interactions[0].injector.query_norm.eps == 1e-5
    assert m.norm1.eps == 1e-6 and torch.all(m.norm1.weight == 1)


# ----------------------------------------------------------------------------- parity
@pytest.mark.parametrize('size,kw', [((96, 128), {}), ((64, 64), dict(add_vit_feature=False, use_final_norm=False,
                                                                       use_extra_extractor=False))])
def test_matches_the_forks_forward(size, kw):
    m = perturbed(tiny(attn_backend='math', **kw), seed=1).eval()
    img = torch.randn(2, 3, *size)
    sd = {k: v.detach() for k, v in m.state_dict().items()}
    expect = ref_adapter.forward(sd, img, ARCH, INDEXES, deform_heads=4,
                                 add_vit_feature=kw.get('add_vit_feature', True),
                                 use_final_norm=kw.get('use_final_norm', True))
    for backend, grad in (('math', False), ('sdpa', False), ('sdpa', True)):  # without autograd the adapter
        m.set_attn_backend(backend)  # updates its streams in place and writes its norms chunk by chunk
        with torch.set_grad_enabled(grad):
            got = m(img)
        for g, e in zip(got, expect):
            assert g.shape == e.shape and g.dtype == torch.float32
            assert _scale_err(g.detach(), e) < 1e-5, (backend, grad, _scale_err(g.detach(), e))


def test_strides_and_channels():
    m = tiny()
    outs = m(torch.randn(1, 3, 64, 96))
    assert [tuple(o.shape) for o in outs] == [(1, 48, 64 // s, 96 // s) for s in (4, 8, 16, 32)]


def test_deform_sampling_pytorch_path_matches_mmcv_and_explicit_gather():
    from mmcv.ops.multi_scale_deform_attn import multi_scale_deformable_attn_pytorch
    g = torch.Generator().manual_seed(0)
    shapes = [(6, 8), (3, 4), (2, 2)]
    value = torch.randn(2, sum(h * w for h, w in shapes), 4, 8, generator=g)
    loc = torch.rand(2, 10, 4, 3, 4, 2, generator=g) * 1.4 - 0.2  # some points outside: zero padding
    w = torch.rand(2, 10, 4, 3, 4, generator=g)
    ours = ms_deform_attn_pytorch(value, shapes, loc, w)
    mmcv = multi_scale_deformable_attn_pytorch(value, torch.tensor(shapes), loc, w)
    explicit = ref_adapter.deform_core(value, shapes, loc, w)
    assert (ours - mmcv).abs().max() < 1e-5 and (ours - explicit).abs().max() < 1e-5


def test_reference_points_are_the_forks():
    shapes = [(4, 6), (2, 3)]
    assert torch.allclose(grid_reference_points(shapes), ref_adapter.reference_points(shapes), atol=1e-7)


# ----------------------------------------------------------------------------- training
def test_freeze_vit_trains_only_the_adapter():
    m = perturbed(tiny(freeze_vit=True)).train()
    vit = {n for n, _ in m.vit_parameters()}
    assert vit and all(n.startswith(('patch_embed.', 'blocks.')) or n == 'pos_embed' for n in vit)
    assert {n for n, p in m.named_parameters() if p.requires_grad} == {n for n, _ in m.named_parameters()} - vit
    assert not m.blocks.training and not m.patch_embed.training and m.spm.training
    sum(o.square().mean() for o in m(torch.randn(1, 3, 64, 64))).backward()
    params = dict(m.named_parameters())
    assert all(params[n].grad is None for n in vit)
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for n, p in params.items() if n not in vit), \
        [n for n, p in params.items() if n not in vit and (p.grad is None or not p.grad.abs().sum())]


def test_unfrozen_vit_gets_gradients():
    m = perturbed(tiny(freeze_vit=False)).train()
    sum(o.mean() for o in m(torch.randn(1, 3, 64, 64))).backward()
    assert m.blocks[0].attn.qkv.weight.grad is not None and m.pos_embed.grad is not None


def test_with_cp_same_outputs_and_gradients():
    img = torch.randn(2, 3, 64, 96)
    res = []
    for cp in (False, True):
        m = perturbed(tiny(with_cp=cp, freeze_vit=False, attn_backend='math'), seed=2).train()
        outs = m(img)
        sum((o * torch.linspace(0, 1, o.numel()).view_as(o)).sum() for o in outs).backward()
        res.append((outs, {n: p.grad.clone() for n, p in m.named_parameters()}))
    (o0, g0), (o1, g1) = res
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(o0, o1))
    assert g0.keys() == g1.keys() and all(torch.allclose(g0[k], g1[k], atol=1e-6, rtol=1e-5) for k in g0)


VIT_NAMES = ('patch_embed.', 'pos_embed', 'blocks.')


def _bf16_and_fp32(seed=3):
    """The same perturbed weights in a bf16-ViT adapter and in the fp32 adapter."""
    ref = perturbed(tiny(), seed=seed)
    low = tiny(weights_dtype='bf16')
    low.load_state_dict(ref.state_dict())
    return low, ref


def test_weights_dtype_bf16_holds_the_vit_in_bf16_and_the_adapter_in_fp32():
    low, ref = _bf16_and_fp32()
    for name, p in low.named_parameters():
        assert p.dtype == (torch.bfloat16 if name.startswith(VIT_NAMES) else torch.float32), name
        assert p.requires_grad == (not name.startswith(VIT_NAMES)), name
    with torch.device('meta'):  # built in the dtype directly, never materialised (no fp32 copy)
        m = tiny(weights_dtype='fp16')
    assert m.blocks[0].mlp.fc1.weight.is_meta and m.blocks[0].mlp.fc1.weight.dtype == torch.float16
    assert m.spm.fc1.weight.dtype == torch.float32
    img = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        a, b = low.eval()(img), ref.eval()(img)
    # bf16 keeps 8 significant bits (relative rounding 2^-9 per operation): a few 1e-3 of the activation scale
    assert all(x.dtype == torch.float32 for x in a)
    errs = [_scale_err(x, y) for x, y in zip(a, b)]
    assert max(errs) < 3e-2 and min(errs) > 0, errs  # > 0: the blocks really ran in bf16


def test_weights_dtype_gradients_flow_through_the_bf16_blocks_to_the_injectors():
    low, ref = _bf16_and_fp32(seed=4)
    img = torch.randn(1, 3, 64, 64)
    grads = []
    for m in (low, ref):
        m.freeze_vit_part()
        outs = m.train()(img)
        sum((o * torch.linspace(0, 1, o.numel()).view_as(o)).sum() for o in outs).backward()
        grads.append({n: p.grad for n, p in m.named_parameters() if p.requires_grad})
    g_low, g_ref = grads
    assert all(p.grad is None for n, p in low.named_parameters() if n.startswith(VIT_NAMES))
    # interaction 0's injector reaches the outputs only through the ViT blocks
    for k in ('interactions.0.injector.gamma', 'interactions.0.injector.attn.value_proj.weight'):
        assert g_low[k] is not None and g_low[k].abs().max() > 0, k
        assert _scale_err(g_low[k], g_ref[k]) < 5e-2, k


def test_weights_dtype_needs_freeze_vit_and_a_low_precision_name():
    with pytest.raises(ValueError, match=r"weights_dtype='bf16' needs freeze_vit=True") as e:
        tiny(weights_dtype='bf16', freeze_vit=False)
    assert '\n' not in str(e.value)
    with pytest.raises(ValueError, match=r"weights_dtype must be None, 'bf16' or 'fp16', got 'int8'"):
        tiny(weights_dtype='int8')


def test_low_memory_inference_build_of_an_adapter_segmentor(tmp_path):
    """``init_segmentor(weights_dtype='bf16')`` (tools/infer.py --weights-dtype): the adapter's ViT in bf16, the
    adapter and heads fp32, a checkpoint loaded into it; labels as the fp32 segmentor's on nearly every pixel."""
    from perception.inference import init_segmentor, segment
    from perception.config import build_model, load_config
    demo = str(ROOT / 'mmcfg/demo/upernet_internvit-adapter-tiny_1xb8-1k_demo-shapes-128x128.py')
    cfg = load_config(demo)
    cfg.model.backbone.init_cfg = None
    src = randomize_(build_model(cfg), seed=9)
    torch.save({'state_dict': src.state_dict()}, tmp_path / 'seg.pth')
    fp32 = init_segmentor(demo, str(tmp_path / 'seg.pth'))
    low = init_segmentor(demo, str(tmp_path / 'seg.pth'), weights_dtype='bf16')
    for name, p in low.named_parameters():
        bf16 = name.startswith(tuple('backbone.' + v for v in VIT_NAMES))
        assert p.dtype == (torch.bfloat16 if bf16 else torch.float32), name
    assert low.cfg.model.backbone.get('weights_dtype') is None  # the kept config describes the fp32 model
    assert torch.equal(low.backbone.spm.fc1.weight, src.backbone.spm.fc1.weight)
    assert torch.equal(low.backbone.blocks[1].mlp.fc1.weight, src.backbone.blocks[1].mlp.fc1.weight.bfloat16())
    img = (np.random.default_rng(0).random((100, 140, 3)) * 255).astype(np.uint8)  # padded to 32 inside
    a, _ = segment(fp32, img)
    b, _ = segment(low, img)
    assert a.shape == (100, 140) and (a == b).mean() > 0.95


def test_builds_from_mmseg_and_mmpretrain_registries():
    from mmpretrain.registry import MODELS as PRETRAIN
    from mmseg.registry import MODELS
    for reg in (MODELS, PRETRAIN):
        m = reg.build(dict(type='InternViTAdapter', arch=dict(ARCH), **KW))
        assert isinstance(m, InternViTAdapter)


# ----------------------------------------------------------------------------- refusals
@pytest.mark.parametrize('indexes,words', [
    ([[0, 1], [1, 3]], ['[1, 3]', 'overlaps']), ([[0, 0], [2, 3]], ['blocks 1..1', 'no interaction']),
    ([[1, 3]], ['blocks 0..0']), ([[0, 1], [2, 2]], ['ends at block 2', 'must end at 3']),
    ([[0, 1], [2, 4]], ['block 4 exceeds the depth']), ([[0, 2], [3, 1]], ['[3, 1] ends before it starts']),
])
def test_refuses_bad_interaction_indexes(indexes, words):
    with pytest.raises(ValueError) as e:
        tiny(interaction_indexes=indexes)
    msg = str(e.value)
    assert '\n' not in msg and all(w in msg for w in words), msg


def test_refuses_heads_that_do_not_divide_the_reduced_width():
    with pytest.raises(ValueError, match=r'deform_num_heads=5 .* value width 24 \(= int\(48 x deform_ratio 0.5\)\)'):
        tiny(deform_num_heads=5)


def test_refuses_a_patch_other_than_16():
    with pytest.raises(ValueError, match='needs patch_size=16.*has 14'):
        InternViTAdapter(dict(ARCH, patch_size=14, img_size=56), **KW)
    m = InternViTAdapter(dict(ARCH, patch_size=14, img_size=56), patch_size=16, **KW)
    assert m.pretrain_grid == (4, 4) and m.patch_embed.proj.weight.shape[-1] == 16


@pytest.mark.parametrize('size,near', [((100, 128), '96x128 or 128x128'), ((48, 48), '32x32 or 64x64'),
                                       ((16, 64), '32x64')])
def test_refuses_input_sizes_the_spatial_prior_module_cannot_align(size, near):
    with pytest.raises(ValueError) as e:
        tiny()(torch.randn(1, 3, *size))
    msg = str(e.value)
    assert f'{size[0]}x{size[1]}' in msg and near in msg and 'size_divisor=32' in msg and '\n' not in msg, msg


# ----------------------------------------------------------------------------- loading
def test_loads_an_internvit_release_into_the_vit_part(tmp_path):
    from perception.models import InternViT
    from perception.models.adapter_loading import resample_kernel_bicubic
    vit = randomize_(InternViT(dict(ARCH, patch_size=14, img_size=56)), seed=4)
    # a format-A release at patch 14: cls_token, pos_embed, 14x14 kernel, blocks, clip_projector
    sd = dict(vit.state_dict(), **{'clip_projector.norm1_q.weight': torch.ones(3)})
    path = tmp_path / 'release.pth'
    torch.save({'module': sd}, path)
    with pytest.raises(CheckpointError, match='kernel is 14x14.*pass patch_size=16'):  # 16 not asked for
        tiny(init_cfg=dict(type='Pretrained', checkpoint=str(path))).init_weights()
    m = InternViTAdapter(dict(ARCH, patch_size=14, img_size=56), patch_size=16,
                         init_cfg=dict(type='Pretrained', checkpoint=str(path)), **KW)
    spm_before = m.spm.fc1.weight.clone()
    m.init_weights()
    assert torch.equal(m.blocks[2].mlp.fc1.weight, sd['blocks.2.mlp.fc1.weight'])
    assert torch.equal(m.pos_embed, sd['pos_embed'])
    assert torch.allclose(m.patch_embed.proj.weight, resample_kernel_bicubic(sd['patch_embed.proj.weight'], 16))
    assert torch.equal(m.spm.fc1.weight, spm_before)  # the adapter keeps its init
    assert not m.blocks[0].attn.qkv.weight.requires_grad and m.spm.fc1.weight.requires_grad


def test_loads_a_fork_segmentor_checkpoint_strictly(tmp_path):
    src = perturbed(tiny(img_size=128), seed=5)  # the fork keeps its pos_embed at img_size / 16
    full = {f'backbone.{k}': v for k, v in src.state_dict().items()}
    full['decode_head.conv_seg.weight'] = torch.zeros(3, 48, 1, 1)
    path = tmp_path / 'seg.pth'
    torch.save({'state_dict': full}, path)
    m = tiny(img_size=128, init_cfg=dict(type='Pretrained', checkpoint=str(path), prefix='backbone.'))
    m.init_weights()
    assert all(torch.equal(a, b) for a, b in zip(m.state_dict().values(), src.state_dict().values()))
    img = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert all(torch.equal(a, b) for a, b in zip(m.eval()(img), src.eval()(img)))
    m = tiny(img_size=128, init_cfg=dict(type='Pretrained', checkpoint=str(path)))  # no prefix: backbone.* found
    m.init_weights()
    assert all(torch.equal(a, b) for a, b in zip(m.state_dict().values(), src.state_dict().values()))
    del full['backbone.interactions.1.extractor.ffn.fc2.bias']
    full['backbone.interactions.0.injector.gamma'] = torch.zeros(40)
    torch.save(full, path)
    with pytest.raises(CheckpointError) as e:
        tiny(img_size=128, init_cfg=dict(type='Pretrained', checkpoint=str(path), prefix='backbone.')).init_weights()
    assert 'interactions.1.extractor.ffn.fc2.bias' in str(e.value) and 'interactions.0.injector.gamma' in str(e.value)


def test_load_state_dict_resamples_another_pos_embed_grid():
    src = tiny(img_size=128)
    m = tiny()
    m.load_state_dict(src.state_dict())
    assert m.pos_embed.shape == (1, 17, 48)


# ----------------------------------------------------------------------------- CUDA (skipped without a GPU)
@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs CUDA (mmcv\'s compiled op)')
def test_cuda_op_matches_the_cpu_path_forward_and_backward():
    from perception.layers.deform_attn import mmcv_function, multi_scale_deformable_attn
    assert mmcv_function() is not None, "mmcv's MultiScaleDeformableAttnFunction is not importable"
    g = torch.Generator().manual_seed(0)
    shapes = [(16, 24), (8, 12), (4, 6)]
    inputs = [torch.randn(2, sum(h * w for h, w in shapes), 4, 8, generator=g),
              torch.rand(2, 50, 4, 3, 4, 2, generator=g) * 1.4 - 0.2, torch.rand(2, 50, 4, 3, 4, generator=g)]
    res = []
    for dev in ('cpu', 'cuda'):
        xs = [t.to(dev).requires_grad_() for t in inputs]
        out = multi_scale_deformable_attn(xs[0], shapes, xs[1], xs[2])
        (out * torch.linspace(0, 1, out.numel(), device=dev).view_as(out)).sum().backward()
        res.append([out.detach().cpu()] + [t.grad.cpu() for t in xs])
    for a, b in zip(*res):
        assert (a - b).abs().max() <= 1e-4 * max(1., a.abs().max().item())
    m = perturbed(tiny(attn_backend='math'), seed=1).eval()
    img = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        cpu = m(img)
        gpu = m.cuda()(img.cuda())
    assert all(_scale_err(b.cpu(), a) < 1e-4 for a, b in zip(cpu, gpu))


def test_stream_norm_without_autograd_is_the_fp32_norm_cast_as_autocast_would():
    """The interactions' norms write their output in chunks straight in the linears' compute dtype when no
    gradient is taken: bit for bit what LayerNorm in fp32 followed by autocast's cast gives (rows not a
    multiple of the chunk, batch 2); with autograd they are the plain fp32 norm."""
    from perception.layers.norm import LayerNormFp32
    from perception.models.adapter_modules import StreamNorm
    torch.manual_seed(0)
    sn = StreamNorm(48, eps=1e-5)
    with torch.no_grad():
        sn.weight.normal_()
        sn.bias.normal_()
    plain = LayerNormFp32(48, eps=1e-5)
    plain.load_state_dict(sn.state_dict())
    x = torch.randn(2, 2 * StreamNorm.ROWS // 2 + 37, 48) * 3 + 1
    want = plain(x)
    with torch.no_grad():
        assert torch.equal(sn(x), want)
        with torch.autocast('cpu', dtype=torch.bfloat16):
            got = sn(x)
        assert got.dtype == torch.bfloat16 and torch.equal(got, want.detach().to(torch.bfloat16))
    y = sn(x.requires_grad_())
    assert y.dtype == torch.float32 and y.requires_grad and torch.equal(y, want)
