"""Register perception's modules in the OpenMMLab registries that exist in this environment."""
import importlib

_DONE = False


def _registries():
    regs = []
    for mod in ('mmseg.registry', 'mmpretrain.registry'):
        try:
            regs.append(importlib.import_module(mod).MODELS)
        except ImportError:
            continue
    return regs


def register_all():
    global _DONE
    if _DONE:
        return
    from .internvit import InternViT
    from .pyramid import InternViTPyramid
    for reg in _registries():
        for cls in (InternViT, InternViTPyramid):
            if reg.get(cls.__name__) is not cls and cls.__name__ not in reg.module_dict:
                reg.register_module(module=cls)
    _DONE = True
