"""mmpretrain 1.2.0 and mmdet 3.3.0 beside a current transformers: :func:`patch_transformers`.

Why. mmpretrain imports its multimodal models when ``pycocotools`` and ``transformers>=4.28.0`` are both
installed (``mmpretrain/utils/dependency.py``: ``WITH_MULTIMODAL``; mmdet 3.x requires pycocotools).
Those modules import from ``transformers.modeling_utils`` names that transformers has since stopped
re-exporting there:

- ``GenerationMixin``: gone from there in 4.52; in ``transformers.generation``.
- ``apply_chunking_to_forward``, ``prune_linear_layer``: gone in 4.56; in ``transformers.pytorch_utils``.
- ``find_pruneable_heads_and_indices``: gone in 4.56; in ``transformers.pytorch_utils`` until 4.57,
  removed in 5.0 (provided here: transformers 4.57's code).
- ``PretrainedConfig``: gone in 5.0; in ``transformers.configuration_utils`` (an alias of 5.x's
  ``PreTrainedConfig``).

Importers: ``mmpretrain/models/multimodal/blip/language_model.py`` and ``ram/bert.py`` (the three
helpers), ``blip2/Qformer.py`` (``apply_chunking_to_forward``), ``ofa/ofa_modules.py``
(``GenerationMixin``, ``PretrainedConfig``), and mmdet's ``mmdet/models/utils/vlfuse_helper.py``
(``apply_chunking_to_forward``). On 4.52-4.55 ``import mmpretrain.models`` fails in OFA with
``ImportError: cannot import name 'GenerationMixin' from 'transformers.modeling_utils'``; from 4.56 on it
fails earlier, in BLIP, whose import sits in a bare ``try/except`` that sets every name to ``None``:
``TypeError: NoneType takes no arguments`` at ``class BertPreTrainedModel(PreTrainedModel)`` (verified
with 4.55.4, 4.56.2, 4.57.6 and 5.24.0; 4.49.0 and 4.51.3 import). mmdet imports ``mmpretrain.models``
(``mmdet/models/data_preprocessors/reid_data_preprocessor.py``), and mmseg imports ``mmdet.models`` when
mmdet is installed (``mmseg/models/decode_heads/mask2former_head.py``), so ``import mmseg.models``, and
with it ``perception.models`` and every tool, fails the same way. mmdet's ``vlfuse_helper.py`` catches the
ImportError and keeps ``None`` / ``object`` placeholders (GLIP's language fusion) that no later fix
reaches: after a failed import this module refuses rather than patch half a process.

What. Each missing name is set on ``transformers.modeling_utils`` from its current home, before
mmpretrain's multimodal package is imported: perception calls this first in
:func:`perception.register_all_modules` and in ``perception.models`` (the configs' first
``custom_imports``). Nothing is written to disk, a name transformers still has is left alone, a second
call changes nothing, and without transformers or pycocotools nothing is imported.
"""
import importlib
import importlib.util
import sys

#: each name mmpretrain / mmdet import from ``transformers.modeling_utils`` -> where transformers keeps it now
HOMES = {
    'apply_chunking_to_forward': 'transformers.pytorch_utils',
    'find_pruneable_heads_and_indices': 'transformers.pytorch_utils',
    'prune_linear_layer': 'transformers.pytorch_utils',
    'GenerationMixin': 'transformers.generation',
    'PretrainedConfig': 'transformers.configuration_utils',
}
MULTIMODAL = 'mmpretrain.models.multimodal'


def find_pruneable_heads_and_indices(heads, n_heads: int, head_size: int, already_pruned_heads: set):
    """transformers 4.57's ``pytorch_utils.find_pruneable_heads_and_indices`` (removed in 5.0): the heads
    still to prune, renumbered past ``already_pruned_heads``, and the indices of the rows/columns to keep."""
    import torch
    mask = torch.ones(n_heads, head_size)
    heads = set(heads) - already_pruned_heads
    for head in heads:
        mask[head - sum(1 for h in already_pruned_heads if h < head)] = 0
    mask = mask.view(-1).eq(1)
    return heads, torch.arange(len(mask))[mask].long()


#: the names transformers removed altogether -> the local implementation
REMOVED = {'find_pruneable_heads_and_indices': find_pruneable_heads_and_indices}


def patch_transformers() -> None:
    """Make the names of :data:`HOMES` importable from ``transformers.modeling_utils`` (see the module
    docstring). Raises an ImportError when an import of mmpretrain's multimodal models already failed in
    this process: the modules it left behind keep their placeholders."""
    # The importers are mmpretrain's multimodal models, imported only when pycocotools is installed, and
    # mmdet, which requires it: without pycocotools nothing needs the names, and modeling_utils (2 s to
    # import) stays unimported.
    if importlib.util.find_spec('transformers') is None or importlib.util.find_spec('pycocotools') is None:
        return
    from transformers import modeling_utils
    missing = [name for name in HOMES if not hasattr(modeling_utils, name)]
    if not missing:
        return
    version = sys.modules['transformers'].__version__
    if MULTIMODAL not in sys.modules and any(m.startswith(MULTIMODAL + '.') for m in sys.modules):
        raise ImportError(f'an import of {MULTIMODAL} already failed in this process (transformers {version} '
                          f'lacks {", ".join(missing)} in transformers.modeling_utils): import perception.models, '
                          'or call perception.register_all_modules(), before mmseg.models, mmdet.models or '
                          'mmpretrain.models')
    for name in missing:
        value = getattr(importlib.import_module(HOMES[name]), name, None) or REMOVED.get(name)
        if value is None:
            raise ImportError(f'transformers {version} has no {name} (looked in transformers.modeling_utils and '
                              f'{HOMES[name]}): perception/compat.py needs its new home')
        setattr(modeling_utils, name, value)
