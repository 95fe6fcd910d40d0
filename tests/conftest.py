import importlib.util
import os
from pathlib import Path

import pytest
import torch

import perception  # noqa: F401  (registers the models)

# pytest-xdist (`make test` runs 2 workers, see the Makefile): each worker, and every tool it starts,
# gets its share of the cores instead of both workers running 2 OpenMP threads each on 2 cores. Measured
# on 2 cores: the suite takes the same time either way (800 vs 793 s), but single tests stop depending on
# what the other worker runs (the TTA test: 88 s oversubscribed, 30 s with one thread, 8 s alone).
if os.environ.get('PYTEST_XDIST_WORKER'):
    _threads = max(1, (os.cpu_count() or 1) // int(os.environ.get('PYTEST_XDIST_WORKER_COUNT', '1')))
    os.environ['OMP_NUM_THREADS'] = str(_threads)
    torch.set_num_threads(_threads)

#: module fixtures that train a model or export a bundle (tens of seconds each): a test that uses one
#: is ``slow`` (left out of ``make test-fast``), marked by ``pytest_collection_modifyitems`` below
SLOW_FIXTURES = frozenset({'trained', 'upernet_bundle', 'linear_bundle', 'fsdp_setup'})


def pytest_collection_modifyitems(config, items):
    for item in items:
        if SLOW_FIXTURES & set(getattr(item, 'fixturenames', ())):
            item.add_marker(pytest.mark.slow)


TINY = dict(embed_dims=64, num_layers=4, num_heads=4, feedforward_channels=160, norm_type='rms_norm',
            qk_normalization=True, qkv_bias=False, patch_size=14, img_size=56)
TINY_LN = dict(embed_dims=48, num_layers=3, num_heads=3, feedforward_channels=96, norm_type='layer_norm',
               qk_normalization=False, qkv_bias=True, patch_size=14, img_size=42)


def randomize_(module: torch.nn.Module, seed: int = 0, scale: float = 0.5):
    """Fill every parameter and buffer with random values so no term of the formula is trivial."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if name.endswith(('norm1.weight', 'norm2.weight', 'q_norm.weight', 'k_norm.weight')):
                p.copy_(1 + 0.3 * torch.randn(p.shape, generator=g))
            elif name.endswith('gamma'):
                p.copy_(0.5 + 0.3 * torch.randn(p.shape, generator=g))
            else:
                fan_in = p[0].numel() if p.ndim > 1 else 1
                p.copy_(torch.randn(p.shape, generator=g) * (scale if p.ndim == 1 else fan_in ** -0.5))
    return module


@pytest.fixture
def tiny_arch():
    return dict(TINY)


@pytest.fixture
def tiny_ln_arch():
    return dict(TINY_LN)


def load_tool(path):
    """A ``tools/*.py`` script as a module (its ``main`` and parser), without running its ``__main__``."""
    path = Path(path)
    spec = importlib.util.spec_from_file_location(f'_tool_{path.stem}', path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def run_tool(capsys, name, *argv):
    """``tools/<name>.py`` run in this process as its ``__main__`` runs it (``run_main(main, argv)``):
    returns (exit status, stderr). A tool's start-up (torch, mmseg) costs seconds; its work here less."""
    from perception.common.cli import run_main
    mod = load_tool(Path(__file__).resolve().parents[1] / 'tools' / f'{name}.py')
    capsys.readouterr()
    try:
        status = run_main(mod.main, [str(a) for a in argv])
    except SystemExit as e:  # argparse
        status = e.code
    return status, capsys.readouterr().err
