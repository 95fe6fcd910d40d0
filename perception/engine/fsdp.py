"""FSDP helpers registered in mmengine's FUNCTIONS: InternViT blocks as the wrap / checkpoint unit.

Used by the FlexibleRunner + FSDPStrategy configs:
``model_wrapper=dict(auto_wrap_policy=dict(type='internvit_block_wrap_policy'), ...)`` and
``activation_checkpointing=dict(check_fn='internvit_block_checkpoint_fn')``.
"""
from torch import nn


def _block_cls():
    from ..layers.block import Block
    return Block


def internvit_block_wrap_policy(module: nn.Module, recurse: bool, nonwrapped_numel: int,
                                min_num_params: int = 0) -> bool:
    """FSDP auto-wrap policy: every InternViT transformer block is its own FSDP unit (the rest of the
    model, embeddings, pyramid and heads, goes to the root unit)."""
    if recurse:
        return True
    return isinstance(module, _block_cls()) and nonwrapped_numel >= min_num_params


def internvit_block_checkpoint_fn(module: nn.Module) -> bool:
    """Activation checkpointing per InternViT block (matches the wrap unit)."""
    return isinstance(module, _block_cls())


def register():
    from ..models.registry import register_modules
    register_modules('FUNCTIONS', [internvit_block_wrap_policy, internvit_block_checkpoint_fn], scopes=('mmengine', ))
