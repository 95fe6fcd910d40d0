"""The ``embedding_bag`` sampling path of multi-scale deformable attention (``ms_deform_attn_gather``, eager
CPU) against the ``grid_sample`` path (``ms_deform_attn_pytorch``, traced / exported graphs) and the explicit
four-neighbour formula of benchmarks/reference_adapter.py: values (zero padding, borders, far outside,
non-square maps, float64), gradients, which path runs where, and the module on either path."""
import pytest
import torch

from benchmarks import reference_adapter as ref_adapter
from conftest import randomize_
from perception.layers import deform_attn
from perception.layers.deform_attn import (MSDeformAttn, grid_reference_points, ms_deform_attn_gather,
                                           ms_deform_attn_pytorch, multi_scale_deformable_attn)

SHAPES = [(6, 8), (3, 5), (1, 1), (4, 2)]  # non-square, a single cell, taller than wide
TOL = {torch.float32: 2e-6, torch.float64: 1e-13}  # relative to the largest magnitude


def sampling_inputs(shapes, B=2, Q=9, M=3, D=5, P=4, dtype=torch.float64, seed=0, special=True):
    """value, locations and weights; locations: random in [-0.3, 1.3] (some outside), plus (``special``)
    per level the map's corners and edges (0 and 1), pixel centres and pixel borders (integer pixel
    coordinates: ``floor`` exact), points just outside and far outside (+-3, 1e3)."""
    g = torch.Generator().manual_seed(seed)
    L = len(shapes)
    value = torch.randn(B, sum(h * w for h, w in shapes), M, D, generator=g, dtype=dtype)
    loc = torch.rand(B, Q, M, L, P, 2, generator=g, dtype=dtype) * 1.6 - 0.3
    for lvl, (h, w) in enumerate(shapes if special else ()):
        special = torch.tensor([[0., 0.], [1., 1.], [0., 1.], [1., 0.], [0.5 / w, 0.5 / h], [1 / w, 1 / h],
                                [1 - 0.5 / w, 0.5], [-0.5 / w, 0.5], [1 + 0.5 / w, 1 + 0.5 / h], [-1e-9, 0.3],
                                [3., 0.5], [0.5, -3.], [1e3, -1e3]], dtype=dtype)
        flat = loc[:, :, :, lvl].reshape(-1, 2)
        flat[:len(special)] = special
        flat[len(special):len(special) + 2] = special[-3:-1] * 1.01  # far outside, off the pixel grid
        loc[:, :, :, lvl] = flat.view_as(loc[:, :, :, lvl])
    weights = torch.rand(B, Q, M, L, P, generator=g, dtype=dtype)
    return value, loc, weights


def rel_err(a, b):
    return ((a - b).abs().max() / b.abs().max()).item()


@pytest.mark.parametrize('dtype', [torch.float32, torch.float64])
@pytest.mark.parametrize('shapes', [SHAPES, [(7, 3)], [(16, 16), (8, 8), (4, 4)]])
def test_gather_matches_grid_sample_and_explicit_formula(shapes, dtype):
    value, loc, w = sampling_inputs(shapes, dtype=dtype)
    ours = ms_deform_attn_gather(value, shapes, loc, w)
    assert ours.shape == (2, 9, 3 * 5) and ours.dtype == dtype and ours.is_contiguous()
    assert rel_err(ours, ms_deform_attn_pytorch(value, shapes, loc, w)) < TOL[dtype]
    assert rel_err(ours, ref_adapter.deform_core(value, shapes, loc, w)) < TOL[dtype]


def test_points_outside_contribute_nothing_and_the_levels_stay_apart():
    """Zero padding, read off directly: a point far outside samples 0; a point at a pixel centre samples
    exactly that pixel of its own level, batch and head."""
    shapes = [(3, 4), (2, 4)]
    value = torch.arange(2 * 20 * 2 * 3, dtype=torch.float64).view(2, 20, 2, 3)
    loc = torch.full((2, 1, 2, 2, 2, 2), 7., dtype=torch.float64)  # every point far outside
    w = torch.zeros(2, 1, 2, 2, 2, dtype=torch.float64)
    w[1, 0, 1, 1, 0] = 2.  # batch 1, head 1, level 1, point 0 ...
    loc[1, 0, 1, 1, 0] = torch.tensor([3.5 / 4, 1.5 / 2])  # ... at the centre of pixel (x 3, y 1), exact
    w[0, 0, 0, 0, 1] = 5.  # batch 0, head 0, level 0, point 1 far outside (weight 5, still nothing)
    out = ms_deform_attn_gather(value, shapes, loc, w).view(2, 2, 3)
    expect = torch.zeros(2, 2, 3, dtype=torch.float64)
    expect[1, 1] = 2 * value[1, 12 + 1 * 4 + 3, 1]
    assert torch.equal(out, expect)


def test_nan_locations_give_nan_like_grid_sample_not_an_index_error():
    value, loc, w = sampling_inputs(SHAPES)
    loc[0, 2, 1, 0, 3] = float('nan')
    ours, gs = ms_deform_attn_gather(value, SHAPES, loc, w), ms_deform_attn_pytorch(value, SHAPES, loc, w)
    assert torch.equal(ours.isnan(), gs.isnan()) and ours.isnan().any()
    assert rel_err(ours.nan_to_num(), gs.nan_to_num()) < 1e-13


def grads(fn, inputs, seed=1):
    xs = [t.detach().clone().requires_grad_() for t in inputs]
    out = fn(xs[0], SHAPES, xs[1], xs[2])
    probe = torch.randn(out.shape, generator=torch.Generator().manual_seed(seed), dtype=out.dtype)
    (out * probe).sum().backward()
    return [t.grad for t in xs]


@pytest.mark.parametrize('dtype', [torch.float32, torch.float64])
def test_gradients_match_grid_sample(dtype):
    """value, locations (the bilinear weights' slopes; grid_sample's grid gradient) and weights; random
    points (some outside), none on a pixel border, where the two paths may round to different sides."""
    value, loc, w = sampling_inputs(SHAPES, dtype=dtype, special=False)
    loc[0, 0, 0] = 5.  # far outside: no gradient to its location
    ours, gs = grads(ms_deform_attn_gather, (value, loc, w)), grads(ms_deform_attn_pytorch, (value, loc, w))
    tol = {torch.float32: 1e-5, torch.float64: 1e-12}[dtype]
    for name, a, b in zip(('value', 'locations', 'weights'), ours, gs):
        assert rel_err(a, b) < tol, name


def test_gradients_match_finite_differences():
    """Independent of grid_sample: torch.autograd.gradcheck in float64 (random points, off pixel borders)."""
    shapes = [(3, 4), (2, 3)]
    g = torch.Generator().manual_seed(3)
    value = torch.randn(1, 18, 2, 3, generator=g, dtype=torch.float64, requires_grad=True)
    loc = (torch.rand(1, 4, 2, 2, 2, 2, generator=g, dtype=torch.float64) * 1.4 - 0.2).requires_grad_()
    w = torch.rand(1, 4, 2, 2, 2, generator=g, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda v, x, a: ms_deform_attn_gather(v, shapes, x, a), (value, loc, w))


def backward_kinds(out):
    """Names of the autograd nodes that produced ``out``."""
    seen, todo = set(), [out.grad_fn]
    while todo:
        fn = todo.pop()
        if fn is not None and fn.name() not in seen:
            seen.add(fn.name())
            todo.extend(f for f, _ in fn.next_functions)
    return seen


def test_eager_cpu_runs_the_gather_path_and_a_trace_the_grid_sample_path():
    value, loc, w = (t.float() for t in sampling_inputs(SHAPES))
    value.requires_grad_()
    kinds = backward_kinds(multi_scale_deformable_attn(value, SHAPES, loc, w))
    assert any('EmbeddingBag' in k for k in kinds) and not any('GridSampler' in k for k in kinds)

    traced = torch.jit.trace(lambda v, x, a: multi_scale_deformable_attn(v, SHAPES, x, a), (value, loc, w))
    ops = {n.kind() for n in traced.graph.nodes()}
    assert 'aten::grid_sampler' in ops and 'aten::embedding_bag' not in ops
    assert rel_err(traced(value, loc, w), multi_scale_deformable_attn(value, SHAPES, loc, w)) < 2e-6


def test_torch_export_records_grid_sample_not_embedding_bag():
    m = MSDeformAttn(d_model=16, n_levels=2, n_heads=2, n_points=2).eval()
    shapes = [(4, 6), (2, 3)]
    feat, ref = torch.randn(1, 30, 16), grid_reference_points(shapes).expand(1, 30, 2, 2)
    prog = torch.export.export(m, (feat, ref, feat, shapes))
    targets = {str(n.target) for gm in prog.graph_module.modules() if isinstance(gm, torch.fx.GraphModule)
               for n in gm.graph.nodes if n.op == 'call_function'}  # nested graphs too (the autocast region)
    assert any('grid_sampler' in t for t in targets) and not any('embedding_bag' in t for t in targets)
    assert rel_err(prog.module()(feat, ref, feat, shapes), m(feat, ref, feat, shapes)) < 2e-6


def test_meta_tensors_run_the_gather_path_shape_only():
    """The memory plan counts FLOPs with the model on ``meta``: the gather path must run there too."""
    value, loc, w = (t.float().to('meta') for t in sampling_inputs(SHAPES))
    assert multi_scale_deformable_attn(value, SHAPES, loc, w).shape == (2, 9, 15)


def test_module_forward_and_backward_agree_between_the_paths(monkeypatch):
    shapes = [(6, 5), (3, 3)]
    S = sum(h * w for h, w in shapes)
    m = MSDeformAttn(d_model=24, n_levels=2, n_heads=3, n_points=3, ratio=0.5)
    randomize_(m, seed=2, scale=0.5)
    g = torch.Generator().manual_seed(4)
    query, feat = torch.randn(2, 7, 24, generator=g), torch.randn(2, S, 24, generator=g)
    ref_pts = torch.rand(2, 7, 2, 2, generator=g)
    probe = torch.randn(2, 7, 24, generator=g)

    def run():
        m.zero_grad()
        xs = [t.clone().requires_grad_() for t in (query, feat)]
        out = m(xs[0], ref_pts, xs[1], shapes)
        (out * probe).sum().backward()
        return [out.detach()] + [t.grad for t in xs] + [p.grad.clone() for p in m.parameters()]

    gather = run()
    monkeypatch.setattr(deform_attn, 'graph_is_traced', lambda: True)  # as while a graph is recorded
    grid = run()
    assert len(gather) == 3 + len(list(m.parameters()))
    for a, b in zip(gather, grid):
        assert rel_err(a, b) < 1e-5
