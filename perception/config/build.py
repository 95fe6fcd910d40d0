"""Building from a config: ``build_model`` (every model built outside the Runner: inference, export,
the memory plan, benchmarks), ``model_shapes`` (its tensors' shapes from a build on the meta device:
``checks.check_weights_fit``) and ``build_runner`` (training and testing)."""
import contextlib
from typing import Optional

import torch

from .checks import check_model_keys, registry
from .environment import check_environment
from .loading import load_config, scope_of
from .rewrites import replace_syncbn


def build_model(cfg, device: Optional[str] = None):
    """The model of ``cfg`` (a path or an mmengine ``Config``; its ``model`` is changed in place): the
    project's modules registered, the config's default scope set, its keys checked and what it asks of
    this machine (``environment``: an xformers kernel that is not installed, ...), SyncBN replaced by
    BN (a model outside the distributed Runner; announced), built under ``torch.device(device)`` when
    given (``'meta'``: the structure without memory, for plans and low-memory builds). Weights are
    the constructors' (``init_weights`` is the caller's choice)."""
    from mmengine.registry import init_default_scope

    from ..setup_env import register_all_modules
    register_all_modules()  # configs without custom_imports build too
    cfg = load_config(cfg)
    scope = scope_of(cfg)
    init_default_scope(scope)
    check_model_keys(cfg.model, scope=scope)
    check_environment(cfg, None if device is None else torch.device(device).type, runner=False)
    replace_syncbn(cfg.model, 'a single-process model')
    with torch.device(device) if device else contextlib.nullcontext():
        return registry(scope, 'MODELS').build(cfg.model)


def _init_cpu_dist(launcher: str):
    """mmengine's init_dist calls torch.cuda.set_device; on CPU start gloo ourselves."""
    if launcher == 'none' or torch.cuda.is_available():
        return
    import torch.distributed as dist
    if not dist.is_initialized():
        dist.init_process_group(backend='gloo')


def build_runner(cfg):
    """mmengine's Runner (or the config's ``runner_type``, e.g. ``FlexibleRunner`` for FSDP) for a
    prepared config (``prepare_config``); on a CPU the gloo process group is started here."""
    from ..setup_env import register_all_modules
    register_all_modules()  # configs without custom_imports build too
    from mmengine.runner import Runner
    _init_cpu_dist(cfg.get('launcher', 'none'))
    if 'runner_type' in cfg:
        from mmengine.registry import RUNNERS
        return RUNNERS.build(cfg)
    return Runner.from_cfg(cfg)


def finish_dist():
    """Let every rank reach the end before any tears the process group down (a rank exiting while
    another is still in a gloo collective aborts it)."""
    import torch.distributed as dist
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def model_shapes(cfg) -> dict:
    """``{name: shape}`` of every tensor (parameters and buffers) of the config's model, built on the
    ``meta`` device from a copy of ``cfg.model`` (no memory, nothing read; the config is unchanged and
    nothing is announced)."""
    import copy

    from mmengine.registry import init_default_scope

    from ..setup_env import register_all_modules
    register_all_modules()
    cfg = load_config(cfg)
    scope = scope_of(cfg)
    init_default_scope(scope)
    with torch.device('meta'):
        model = registry(scope, 'MODELS').build(copy.deepcopy(cfg.model))
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}
