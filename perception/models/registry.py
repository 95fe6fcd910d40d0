"""Register perception's modules in the OpenMMLab registries that exist in this environment."""
import importlib
from typing import Iterable, Sequence

_DONE = False


def register_modules(registry: str, modules: Iterable, scopes: Sequence[str] = ('mmengine', 'mmseg', 'mmpretrain')):
    """Register classes or functions under their own names in the registry called ``registry``
    (``'MODELS'``, ``'HOOKS'``, ...) of each installed scope. Idempotent."""
    modules = list(modules)
    for scope in scopes:
        try:
            reg = getattr(importlib.import_module(f'{scope}.registry'), registry)
        except (ImportError, AttributeError):
            continue
        for m in modules:
            if m.__name__ not in reg.module_dict:
                reg.register_module(module=m)


def register_all():
    """Models in mmseg's and mmpretrain's MODELS; heads, datasets, transforms, hooks, metrics and
    optimizer constructors in the registries of the libraries that use them."""
    global _DONE
    if _DONE:
        return
    from .internvit import InternViT
    from .pyramid import InternViTPyramid
    register_modules('MODELS', [InternViT, InternViTPyramid], scopes=('mmseg', 'mmpretrain'))
    try:
        import mmpretrain.registry  # noqa: F401
    except ImportError:
        pass
    else:
        from ..classification import register as register_classification
        register_classification()
    try:
        import mmseg.registry  # noqa: F401
    except ImportError:
        _DONE = True
        return
    from ..datasets import ade
    from ..engine import fsdp, hooks, layer_decay, optim_wrapper, pretrained
    from .heads import LinearProbeHead
    register_modules('MODELS', [LinearProbeHead], scopes=('mmseg', ))
    for mod in (ade, hooks, layer_decay, optim_wrapper, pretrained, fsdp):
        mod.register()
    _DONE = True
