"""Registration the OpenMMLab way: each class is registered where it is defined.

    from ..registry import register

    @register('MODELS', 'mmseg', 'mmpretrain')
    class InternViT(...):

puts the class under its own name in ``mmseg.registry.MODELS`` and ``mmpretrain.registry.MODELS``,
so configs write ``type='InternViT'`` under mmseg's or mmpretrain's default scope. Importing a
subpackage registers what it defines; :func:`perception.register_all_modules` imports them all
(configs do the same with ``custom_imports``). This module imports no perception subpackage.
"""
import importlib

SCOPES = ('mmengine', 'mmseg', 'mmpretrain')


def openmmlab_registry(scope: str, registry: str):
    """``{scope}.registry.{registry}``, e.g. ``openmmlab_registry('mmseg', 'MODELS')``."""
    if scope not in SCOPES:
        raise ValueError(f'unknown OpenMMLab scope {scope!r}; expected one of {SCOPES}')
    return getattr(importlib.import_module(f'{scope}.registry'), registry)


def register(registry: str, *scopes: str, name: str = None):
    """Class/function decorator: register ``obj`` as ``name`` (default: its own name) in the
    registry called ``registry`` of each scope (default: all three). Re-importing the defining
    module replaces its own entry; a different object under the same name is refused."""
    scopes = scopes or SCOPES

    def deco(obj):
        key = name or obj.__name__
        for scope in scopes:
            reg = openmmlab_registry(scope, registry)
            old = reg.module_dict.get(key)
            if old is obj:
                continue
            if old is not None and (old.__module__, old.__qualname__) != (obj.__module__, obj.__qualname__):
                raise KeyError(f'{scope}.registry.{registry} already holds {key!r} '
                               f'({old.__module__}.{old.__qualname__}); perception will not replace it '
                               f'with {obj.__module__}.{obj.__qualname__}')
            reg.register_module(name=key, module=obj, force=old is not None)
        return obj

    return deco
