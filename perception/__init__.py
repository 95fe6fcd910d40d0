"""perception: dense perception with InternViT on OpenMMLab.

``import perception`` is light: it imports neither torch nor OpenMMLab itself, so the torch-free runtime
``perception.deploy`` imports on machines that have neither. The names below load on first use.

Classes register themselves in the OpenMMLab registries where they are defined: importing
``perception.models`` registers the backbone, neck and heads; configs import the registering
subpackages with ``custom_imports`` (``mmcfg/_base_/default_runtime.py``); code that builds from
its own configs calls ``perception.register_all_modules()``, as with mmseg.
"""
import importlib
import sys

__version__ = '0.1.0'

_LAZY = {
    'InternViT': 'perception.models',
    'InternViTAdapter': 'perception.models',
    'InternViTPyramid': 'perception.models',
    'load_backbone': 'perception.models',
    'load_internvl_clip': 'perception.models.internvl_clip_loading',
    'load_internvl_tokenizer': 'perception.zero_shot',
    'zero_shot_classifier': 'perception.zero_shot',
    'CheckpointError': 'perception.checkpoint',
    'allow_mmengine_globals': 'perception.checkpoint',
    'register_all_modules': 'perception.setup_env',
}

__all__ = ['__version__', *_LAZY]

# Weights-only loading of mmengine checkpoints (resume, load_from, a plain torch.load) needs the few
# classes they pickle allow-listed. Done here when torch is already imported (importing it here would
# make perception.deploy depend on it); perception's loaders, `perception.engine` (which the configs
# import) and `perception.allow_mmengine_globals()` do it in any case.
if sys.modules.get('torch') is not None:
    from .checkpoint.safe_load import allow_mmengine_globals as _allow
    _allow()


def __getattr__(name):
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')


def __dir__():
    return sorted(set(globals()) | set(_LAZY))
