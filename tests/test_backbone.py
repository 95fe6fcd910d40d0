import pytest
import torch
import torch.nn.functional as F

from benchmarks import reference as ref
from conftest import randomize_
from perception.layers import resample_abs_pos_embed, resolve_attn_backend
from perception.models import InternViT, InternViTPyramid


def _scale_err(a, b):
    """max |a - b| relative to the activation scale (max |b|)."""
    return ((a - b).abs().max() / b.abs().max()).item()


@pytest.mark.parametrize('size', [(70, 42), (28, 98), (56, 56), (14, 14)])
def test_output_shapes_odd_non_square(tiny_arch, size):
    m = InternViT(tiny_arch, out_indices=(0, -1, 2))
    m.init_weights()
    outs = m(torch.randn(2, 3, *size))
    assert len(outs) == 3
    for o in outs:
        assert o.shape == (2, 64, size[0] // 14, size[1] // 14)
    assert m.out_indices == (0, 3, 2)


def test_cls_token_output(tiny_arch):
    m = InternViT(tiny_arch, out_indices=(1, 3), output_cls_token=True)
    outs = m(torch.randn(1, 3, 42, 56))
    assert all(len(o) == 2 for o in outs)
    assert outs[1][0].shape == (1, 64, 3, 4) and outs[1][1].shape == (1, 64)


@pytest.mark.parametrize('arch_fixture', ['tiny_arch', 'tiny_ln_arch'])
@pytest.mark.parametrize('size', [(56, 56), (42, 70)])
def test_matches_independent_formula(arch_fixture, size, request):
    arch = request.getfixturevalue(arch_fixture)
    torch.manual_seed(0)
    m = randomize_(InternViT(arch, out_indices=(0, -1), attn_backend='math'), seed=1)
    img = torch.randn(2, 3, *size)
    sd = {k: v.detach() for k, v in m.state_dict().items()}
    expect, (h, w) = ref.forward(sd, img, arch)
    for backend in ('math', 'sdpa'):
        m.set_attn_backend(backend)
        got = m(img)
        for j, i in enumerate((0, arch['num_layers'] - 1)):
            exp_map = expect[i][:, 1:].reshape(2, h, w, -1).permute(0, 3, 1, 2)
            assert _scale_err(got[j], exp_map) < 1e-5, (backend, i)


def test_sdpa_and_math_agree_fp32(tiny_arch):
    m = randomize_(InternViT(tiny_arch, attn_backend='math'), seed=3)
    x = torch.randn(2, 3, 56, 84)
    a = m(x)[0]
    m.set_attn_backend('sdpa')
    b = m(x)[0]
    assert _scale_err(b, a) < 1e-6


def test_qk_norm_is_over_full_width(tiny_arch):
    """A per-head q/k norm gives a different answer: the test would catch that implementation."""
    m = randomize_(InternViT(tiny_arch, attn_backend='math'), seed=4)
    blk = m.blocks[0]
    x = torch.randn(1, 5, 64)
    sd = {f'blocks.0.{k}': v.detach() for k, v in blk.state_dict().items()}
    full = ref.block(sd, 'blocks.0.', x, 4)
    assert _scale_err(blk(x), full) < 1e-5
    # per-head variant: normalise each 16-wide head separately
    w = sd['blocks.0.attn.q_norm.weight']
    sd_per_head = dict(sd)
    sd_per_head['blocks.0.attn.q_norm.weight'] = w  # same weights, different grouping below
    qkv = ref.norm(sd, 'blocks.0.norm1', x, 'rms_norm', 1e-6) @ sd['blocks.0.attn.qkv.weight'].T
    q = qkv[..., :64]
    per_head = ref.rms_norm(q.reshape(1, 5, 4, 16), w.reshape(4, 16)).reshape(1, 5, 64)
    assert (per_head - ref.rms_norm(q, w)).abs().max() > 1e-3


def test_every_parameter_gets_a_gradient(tiny_arch):
    m = InternViT(tiny_arch, out_indices=(1, 3), drop_path_rate=0.1, with_cp=True)
    m.init_weights()
    m.train()
    outs = m(torch.randn(2, 3, 42, 70))  # non-native grid: pos_embed resampled with autograd
    sum(o.square().mean() for o in outs).backward()
    missing = [n for n, p in m.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    # blocks past the deepest out_index do not run; all others must receive a gradient
    assert all(n.startswith('blocks.') for n in missing)
    ran = {n for n, _ in m.named_parameters() if not n.startswith('blocks.') or int(n.split('.')[1]) <= 3}
    assert not ran & set(missing), missing


def test_gradient_checkpointing_same_gradients(tiny_arch):
    torch.manual_seed(0)
    m = randomize_(InternViT(tiny_arch, out_indices=(-1,)), seed=5)
    x = torch.randn(1, 3, 42, 42)
    grads = []
    for cp in (False, True):
        m.zero_grad()
        m.with_cp = cp
        m.train()
        m(x)[0].sum().backward()
        grads.append(torch.cat([p.grad.flatten() for p in m.parameters()]))
    assert torch.allclose(grads[0], grads[1], rtol=1e-5, atol=1e-6)


def test_drop_path_only_in_training(tiny_arch):
    m = randomize_(InternViT(tiny_arch, drop_path_rate=0.9), seed=6)
    x = torch.randn(4, 3, 28, 28)
    m.eval()
    assert torch.equal(m(x)[0], m(x)[0])
    m.train()
    torch.manual_seed(1)
    a = m(x)[0]
    torch.manual_seed(2)
    b = m(x)[0]
    assert not torch.allclose(a, b)


def test_frozen(tiny_arch):
    m = InternViT(tiny_arch, frozen=True, drop_path_rate=0.5)
    m.init_weights()
    assert not any(p.requires_grad for p in m.parameters())
    m.train()
    assert not m.training and not any(mod.training for mod in m.modules())
    out = m(torch.randn(1, 3, 28, 28))[0]
    assert not out.requires_grad and out.grad_fn is None
    feats = m.get_intermediate_layers(torch.randn(1, 3, 28, 28), 2)
    assert feats[0].grad_fn is None


@pytest.mark.parametrize('size', [(50, 56), (56, 57), (13, 14)])
def test_bad_input_size_names_it(tiny_arch, size):
    m = InternViT(tiny_arch)
    with pytest.raises(ValueError, match=f'{size[0]}x{size[1]}.*patch size 14'):
        m(torch.randn(1, 3, *size))


def test_bad_arch_and_indices(tiny_arch):
    with pytest.raises(ValueError, match='unknown InternViT arch'):
        InternViT('7b')
    with pytest.raises(ValueError, match="missing keys \\['img_size'\\]"):
        InternViT({k: v for k, v in tiny_arch.items() if k != 'img_size'})
    with pytest.raises(ValueError, match='layer index 4 out of range for 4 layers'):
        InternViT(tiny_arch, out_indices=(4,))
    with pytest.raises(ValueError, match='attn_backend must be one of'):
        InternViT(tiny_arch, attn_backend='flash')


def test_get_intermediate_layers(tiny_arch):
    m = randomize_(InternViT(tiny_arch), seed=7)
    x = torch.randn(2, 3, 42, 56)
    last2 = m.get_intermediate_layers(x, n=2)
    assert len(last2) == 2 and last2[0].shape == (2, 12, 64)
    maps = m.get_intermediate_layers(x, n=[1, 3], reshape=True, return_class_token=True)
    assert maps[0][0].shape == (2, 64, 3, 4) and maps[0][1].shape == (2, 64)
    assert torch.allclose(maps[1][0].flatten(2).transpose(1, 2), last2[1])
    assert torch.allclose(m(x)[0], maps[1][0])


def test_pos_embed_resampled_in_forward_and_cached(tiny_arch):
    m = randomize_(InternViT(tiny_arch), seed=8)
    pe = m.pos_embed.detach()
    with torch.no_grad():
        got = m.pos_embed_for((3, 5))
    grid = pe[:, 1:].reshape(1, 4, 4, 64).permute(0, 3, 1, 2)
    exp = F.interpolate(grid, size=(3, 5), mode='bicubic', align_corners=False, antialias=False)
    exp = torch.cat([pe[:, :1], exp.permute(0, 2, 3, 1).reshape(1, 15, 64)], 1)
    assert torch.allclose(got, exp, atol=1e-6)
    with torch.no_grad():
        assert m.pos_embed_for((3, 5)) is got  # cached
        m.pos_embed.mul_(2)  # new weights invalidate the cache
        assert torch.allclose(m.pos_embed_for((3, 5)), 2 * exp, atol=1e-5)
    assert m.pos_embed_for((4, 4)) is m.pos_embed  # native grid: no resampling
    # antialiased resampling (timm's default) is a different operation when the grid shrinks
    aa = F.interpolate(grid, size=(2, 2), mode='bicubic', align_corners=False, antialias=True)
    assert not torch.allclose(resample_abs_pos_embed(pe, (2, 2))[:, 1:],
                              aa.permute(0, 2, 3, 1).reshape(1, 4, 64), atol=1e-3)


def test_attn_backend_switch(tiny_arch, monkeypatch):
    monkeypatch.delenv('PERCEPTION_ATTN', raising=False)
    assert resolve_attn_backend('auto', 'cpu') == 'sdpa'
    monkeypatch.setenv('PERCEPTION_ATTN', 'math')
    assert resolve_attn_backend('auto', 'cpu') == 'math'
    assert resolve_attn_backend('sdpa', 'cpu') == 'sdpa'  # an explicit choice wins
    m = InternViT(tiny_arch)
    assert m.resolved_attn_backend() == 'math'
    monkeypatch.setenv('PERCEPTION_ATTN', 'bogus')
    with pytest.raises(ValueError, match='PERCEPTION_ATTN'):
        resolve_attn_backend('auto', 'cpu')
    monkeypatch.delenv('PERCEPTION_ATTN')
    with pytest.raises(RuntimeError, match='xformers'):
        m.set_attn_backend('xformers')
        m(torch.randn(1, 3, 28, 28))


def test_auto_does_not_pick_an_xformers_without_kernels(monkeypatch):
    """Seen on a GPU machine: an xformers wheel built for another torch imports, then raises
    NotImplementedError ('No operator found') on the first call. 'auto' must use SDPA (with a
    warning), an explicit 'xformers' must fail naming the reason, before any training step."""
    from perception.layers import attention as A

    class BrokenXformers:
        @staticmethod
        def memory_efficient_attention(q, k, v, scale=None):
            raise NotImplementedError('No operator found for `memory_efficient_attention_forward`')
    monkeypatch.delenv('PERCEPTION_ATTN', raising=False)
    monkeypatch.setattr(A, '_xformers_ops', lambda: BrokenXformers)
    A.xformers_unusable_reason.cache_clear()
    A._warn_once.cache_clear()
    try:
        with pytest.warns(RuntimeWarning, match='uses PyTorch SDPA: xformers cannot run on cuda'):
            assert A.resolve_attn_backend('auto', 'cuda') == 'sdpa'
        with pytest.raises(RuntimeError, match="attn_backend='xformers': xformers cannot run on cuda"):
            A.resolve_attn_backend('xformers', 'cuda')
        assert A.resolve_attn_backend('auto', 'cpu') == 'sdpa'
    finally:
        A.xformers_unusable_reason.cache_clear()
        A._warn_once.cache_clear()


def test_bf16_autocast_close_to_fp32(tiny_arch):
    m = randomize_(InternViT(tiny_arch), seed=9)
    x = torch.randn(1, 3, 56, 56)
    ref32 = m(x)[0]
    with torch.autocast('cpu', dtype=torch.bfloat16):
        out = m(x)[0]
    assert all(p.dtype == torch.float32 for p in m.parameters())  # no casts of the weights
    assert _scale_err(out.float(), ref32) < 5e-2


def test_pure_bf16_weights_run(tiny_arch):
    m = randomize_(InternViT(tiny_arch), seed=10)
    x = torch.randn(1, 3, 42, 42)
    ref32 = m(x)[0]
    m.to(torch.bfloat16)
    out = m(x.bfloat16())[0]
    assert out.dtype == torch.bfloat16
    assert _scale_err(out.float(), ref32) < 5e-2


@pytest.mark.parametrize('arch,count', [('6b', 5902.79), ('6b-448px-v1.5', 5536.50),
                                        ('6b-448px-v2.5', 5536.50), ('300m', 304.01)])
def test_presets_on_meta_device(arch, count):
    with torch.device('meta'):
        m = InternViT(arch)
    m.init_weights()  # a no-op on meta, must not materialise
    n = sum(p.numel() for p in m.parameters())
    assert round(n / 1e6, 2) == count
    assert all(p.is_meta for p in m.parameters())


def test_pyramid_levels_and_names():
    neck = InternViTPyramid(in_channels=32)
    names = set(neck.state_dict())
    assert {'up1.0.weight', 'up1.0.bias', 'up1.1.weight', 'up1.1.bias', 'up1.3.weight', 'up1.3.bias',
            'up2.0.weight', 'up2.0.bias'} == names
    feats = [torch.randn(2, 32, 5, 6) for _ in range(4)]
    outs = neck(feats)
    assert [tuple(o.shape[-2:]) for o in outs] == [(20, 24), (10, 12), (5, 6), (2, 3)]
    assert outs[2] is feats[2]
    with pytest.raises(ValueError, match='expects 4 feature map'):
        neck(feats[:2])


def test_pyramid_layernorm_is_fp32_channels_first():
    neck = InternViTPyramid(in_channels=8)
    with torch.no_grad():
        neck.up1[1].weight.uniform_(0.5, 1.5)
        neck.up1[1].bias.uniform_(-1, 1)
    x = torch.randn(1, 8, 3, 3) * 50 + 10
    ln = neck.up1[1]
    y = ln(x)
    mu = x.mean(1, keepdim=True)
    var = ((x - mu) ** 2).mean(1, keepdim=True)
    exp = (x - mu) / torch.sqrt(var + 1e-6) * ln.weight[:, None, None] + ln.bias[:, None, None]
    assert torch.allclose(y, exp, atol=1e-5)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        yb = ln(x.bfloat16())
    assert yb.dtype == torch.bfloat16 and torch.allclose(yb.float(), exp, atol=0.05, rtol=0.02)


def test_frozen_backbone_held_in_bf16_computes_as_the_fp32_one():
    """weights_dtype='bf16' (the one-GPU configs): every weight bf16 from the start, the forward casts
    its input and returns fp32, close to the fp32 model holding the same (bf16-rounded) weights."""
    from perception.models import InternViT
    tiny = dict(embed_dims=96, num_layers=4, num_heads=4, feedforward_channels=384, norm_type='rms_norm',
                qk_normalization=True, qkv_bias=False, patch_size=14, img_size=224)
    ref = InternViT(tiny, out_indices=(1, 3), frozen=True)
    ref.init_weights()
    ref.load_state_dict({k: v.to(torch.bfloat16).float() for k, v in ref.state_dict().items()})
    low = InternViT(tiny, out_indices=(1, 3), frozen=True, weights_dtype='bf16')
    assert {p.dtype for p in low.parameters()} == {torch.bfloat16}
    assert float(low.blocks[0].norm1.weight.float().mean()) == 1.0  # constructor values, not garbage
    low.load_state_dict(ref.state_dict())
    x = torch.randn(2, 3, 112, 140)
    for a, b in zip(ref(x), low(x)):
        assert b.dtype == torch.float32 and not b.requires_grad
        assert float((a - b).abs().max()) < 0.03 * float(a.abs().max())
    with pytest.raises(ValueError, match='needs frozen=True'):
        InternViT(tiny, weights_dtype='bf16')
    with pytest.raises(ValueError, match="weights_dtype must be None, 'bf16' or 'fp16'"):
        InternViT(tiny, frozen=True, weights_dtype='int8')
