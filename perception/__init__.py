"""perception: dense perception with InternViT on OpenMMLab.

Importing the package registers its models (``type='InternViT'``, ``type='InternViTPyramid'``, the
heads, datasets, hooks and optimizer constructors) in mmsegmentation's, mmpretrain's and mmengine's
registries, and allow-lists what mmengine checkpoints hold for weights-only loading.

``import perception.deploy`` (the torch-free ONNX runtime) is the exception: it must work where
torch and mmseg are not installed, so the parent package then skips the heavy imports; they happen
on first use of any attribute below.
"""
import sys

__version__ = '0.1.0'

_LAZY = {
    'InternViT': ('.models', 'InternViT'),
    'InternViTPyramid': ('.models', 'InternViTPyramid'),
    'load_backbone': ('.models', 'load_backbone'),
    'CheckpointError': ('.checkpoint', 'CheckpointError'),
    'allow_mmengine_globals': ('.checkpoint', 'allow_mmengine_globals'),
}


def _deploy_only_import() -> bool:
    """True while Python imports this package only as the parent of ``perception.deploy``."""
    f = sys._getframe(1)
    while f is not None:
        if f.f_code.co_name in ('_find_and_load', '_find_and_load_unlocked'):
            name = f.f_locals.get('name')
            if isinstance(name, str) and name.startswith('perception.'):
                return name == 'perception.deploy' or name.startswith('perception.deploy.')
        f = f.f_back
    return False


def _setup():
    from . import models  # noqa: F401  (registration)
    from .checkpoint import allow_mmengine_globals
    allow_mmengine_globals()  # mmengine checkpoints (resume, load_from) load with weights_only=True


def ensure_registered():
    """Register everything (idempotent). Library entry points call it: ``import perception`` alone
    does not when the package was first imported as the parent of ``perception.deploy``."""
    _setup()


def __getattr__(name):
    if name in _LAZY:
        import importlib
        _setup()
        mod, attr = _LAZY[name]
        value = getattr(importlib.import_module(mod, __name__), attr)
        globals()[name] = value
        return value
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')


if not _deploy_only_import():
    _setup()
    from .checkpoint import CheckpointError, allow_mmengine_globals  # noqa: E402,F401
    from .models import InternViT, InternViTPyramid, load_backbone  # noqa: E402,F401
