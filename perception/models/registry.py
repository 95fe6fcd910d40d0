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
    """Models in mmseg's and mmpretrain's MODELS; heads, datasets, transforms, hooks and optimizer
    constructors in mmseg's/mmengine's registries."""
    global _DONE
    if _DONE:
        return
    from .internvit import InternViT
    from .pyramid import InternViTPyramid
    for reg in _registries():
        for cls in (InternViT, InternViTPyramid):
            if cls.__name__ not in reg.module_dict:
                reg.register_module(module=cls)
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
    from mmseg.registry import MODELS as SEG_MODELS

    from ..datasets import ade
    from ..engine import fsdp, hooks, layer_decay, optim_wrapper, pretrained
    from .heads import LinearProbeHead
    if 'LinearProbeHead' not in SEG_MODELS.module_dict:
        SEG_MODELS.register_module(module=LinearProbeHead)
    ade.register()
    hooks.register()
    layer_decay.register()
    optim_wrapper.register()
    pretrained.register()
    fsdp.register()
    _DONE = True
