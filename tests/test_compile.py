"""compile_blocks: one compiled block body shared by every block (issue 15).

Numerics against the independent formula (benchmarks/reference.py) and against eager, with
drop path, activation checkpointing, frozen and several input sizes; that the graph count stays
bounded (one graph for all blocks, not one per block); the eager fallback and the 'force' error
where the platform cannot compile; the tools' --compile flag."""
import sys
import warnings
from pathlib import Path

import pytest
import torch

from benchmarks import reference as ref
from conftest import randomize_
from perception.layers import compile as block_compile
from perception.models import InternViT

ROOT = Path(__file__).resolve().parents[1]


def _scale_err(a, b):
    return ((a - b).abs().max() / b.abs().max().clamp_min(1e-12)).item()


@pytest.mark.slow
def test_compiled_blocks_match_the_formula_share_one_graph_and_train(tiny_arch):
    m = randomize_(InternViT(tiny_arch, out_indices=(1, -1), attn_backend='sdpa', drop_path_rate=0.3,
                             with_cp=True, compile_blocks=True), seed=5)
    m.eval()
    img = torch.randn(2, 3, 56, 42)
    n0 = block_compile.graphs_compiled()
    with torch.no_grad():
        got = m(img)
    assert block_compile.graphs_compiled() == n0 + 1  # four blocks, one graph
    sd = {k: v.detach() for k, v in m.state_dict().items()}
    expect, (h, w) = ref.forward(sd, img, tiny_arch)
    for j, i in enumerate((1, tiny_arch['num_layers'] - 1)):
        assert _scale_err(got[j], expect[i][:, 1:].reshape(2, h, w, -1).permute(0, 3, 1, 2)) < 1e-5
    # another size: at most one more (dynamic) graph, then none for a third size
    with torch.no_grad():
        m(torch.randn(1, 3, 70, 28))
        m(torch.randn(1, 3, 28, 84))
    assert block_compile.graphs_compiled() <= n0 + 2

    # training: drop path (per-block rates, drawn outside the graph) + checkpointing; same seed ->
    # the same loss and gradients as eager
    m.train()
    grads = {}
    for mode in (False, True):
        m.set_compile_blocks(mode)
        m.zero_grad(set_to_none=True)
        torch.manual_seed(7)
        loss = sum(o.pow(2).mean() for o in m(img))
        loss.backward()
        grads[mode] = (loss.detach(), [p.grad.clone() for p in m.parameters()])
    assert torch.allclose(grads[True][0], grads[False][0], rtol=1e-5)
    for a, b in zip(grads[True][1], grads[False][1]):
        assert _scale_err(a, b) < 1e-4
    assert block_compile.graphs_compiled() <= n0 + 4  # + grad on, with / without drop-path scales


def test_frozen_compiled_backbone(tiny_arch):
    m = randomize_(InternViT(tiny_arch, out_indices=(0, 2), frozen=True, compile_blocks=True), seed=6)
    img = torch.randn(1, 3, 56, 56)
    got = m(img)
    assert not any(o.requires_grad for o in got)
    m.set_compile_blocks(False)
    for a, b in zip(got, m(img)):
        assert _scale_err(a, b) < 1e-5


def test_no_compiler_warns_and_runs_eagerly_force_fails(tiny_arch, monkeypatch):
    monkeypatch.setenv('CXX', '/nonexistent/g++')
    why = block_compile.compile_unavailable_reason('cpu')
    assert why and 'C++ compiler' in why
    m = randomize_(InternViT(tiny_arch, compile_blocks=True), seed=2)
    x = torch.randn(1, 3, 28, 28)
    n0 = block_compile.graphs_compiled()
    block_compile._warn_once.cache_clear()
    with pytest.warns(RuntimeWarning, match='running the blocks eagerly.*C\\+\\+ compiler'):
        out = m(x)[0]
    assert block_compile.graphs_compiled() == n0
    m.set_compile_blocks(False)
    assert torch.equal(out, m(x)[0])
    m.set_compile_blocks('force')
    with pytest.raises(RuntimeError, match="compile_blocks='force'.*C\\+\\+ compiler"):
        m(x)


@pytest.mark.parametrize('bad', ['yes', 2, None])
def test_bad_compile_value(tiny_arch, bad):
    with pytest.raises(ValueError, match='compile_blocks must be'):
        InternViT(tiny_arch, compile_blocks=bad)


def test_tools_compile_flag_sets_the_backbone_key(monkeypatch):
    sys.path.insert(0, str(ROOT / 'tools'))
    import train as train_tool
    from perception.config import ConfigError, compile_options, prepare_config
    assert train_tool.parse_args(['c.py']).compile is None
    assert train_tool.parse_args(['c.py', '--compile']).compile is True
    assert train_tool.parse_args(['c.py', '--compile', 'force']).compile == 'force'
    assert train_tool.parse_args(['c.py', '--no-compile']).compile is False
    for bad in (['--compile', 'always'], ['--compile', '--no-compile']):
        with pytest.raises(SystemExit):
            train_tool.parse_args(['c.py', *bad])
    cfg_file = str(ROOT / 'mmcfg/demo/upernet_internvit-tiny_1xb8-1k_demo-shapes-112x112.py')
    cfg = prepare_config(cfg_file, cfg_options=compile_options(True, {'train_cfg.max_iters': 3}))
    assert cfg.model.backbone.compile_blocks is True and cfg.train_cfg.max_iters == 3
    # the default: on with CUDA, off on CPU; a config's own value wins
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)
    assert prepare_config(cfg_file).model.backbone.compile_blocks is True
    assert prepare_config(cfg_file, cfg_options=compile_options(False)).model.backbone.compile_blocks is False
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    assert 'compile_blocks' not in prepare_config(cfg_file).model.backbone
    # a backbone without the argument: one line naming the key
    from perception.config import check_model_keys
    with pytest.raises(ConfigError, match='model.backbone.compile_blocks'):
        check_model_keys(dict(type='EncoderDecoder', backbone=dict(type='ResNetV1c', depth=18, compile_blocks=True)))
