"""``register_all_modules()``: mmseg's idiom for code that builds from configs without them."""
import importlib
from typing import Union

from .compat import patch_transformers

#: the subpackages whose modules register classes; the configs' ``custom_imports`` name the same
PACKAGES = ('perception.models', 'perception.datasets', 'perception.segmentation',
            'perception.classification', 'perception.engine')


def register_all_modules(init_default_scope: Union[bool, str] = False) -> None:
    """Import every subpackage that registers classes (idempotent), and with
    ``init_default_scope=True`` (or ``'mmseg'`` / ``'mmpretrain'``) make that library the default
    scope, as ``mmseg.utils.register_all_modules`` does. A current transformers is made importable for
    mmpretrain's multimodal models first (:mod:`perception.compat`): they come in with mmseg's models."""
    patch_transformers()
    for pkg in PACKAGES:
        importlib.import_module(pkg)
    if init_default_scope:
        from mmengine.registry import init_default_scope as init_scope
        init_scope('mmseg' if init_default_scope is True else init_default_scope)
