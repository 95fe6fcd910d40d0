import pytest
import torch

import perception  # noqa: F401  (registers the models)

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
