"""``prepare_config``: a config read, checked and adapted for the Runner, in one place."""
from typing import Optional

import torch
from mmengine.config import Config

from . import rewrites
from .checks import check_model_keys, check_runner_keys
from .environment import check_environment
from .loading import load_config, scope_of
from .values import check_values


def prepare_config(config, work_dir: Optional[str] = None, amp: bool = False, fp32: bool = False,
                   cfg_options: Optional[dict] = None, launcher: str = 'none', auto_scale_lr: bool = False,
                   random_init: bool = False) -> Config:
    """Load a config (``load_config``), apply ``cfg_options``, check its keys (``checks``) and values
    (``values``), adapt it to this machine and these flags with the announced rewrites of ``rewrites``
    (compiled blocks on CUDA, ``--auto-scale-lr``, ``--random-init``, the work dir, precision: ``--amp`` /
    ``--fp32``, bf16 autocast through ``BF16OptimWrapper`` on a CPU; the CPU runtime: gloo, BN for
    SyncBN), and check that this machine has what it asks for (``environment``: kernels, compiler,
    packages). Every refusal comes from here, before the Runner makes the work dir."""
    cfg = load_config(config)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    cfg.launcher = launcher
    scope = scope_of(cfg)
    if cfg.get('model') is not None:
        from ..setup_env import register_all_modules
        register_all_modules()
        check_model_keys(cfg.model, scope=scope)
    check_runner_keys(cfg, scope=scope)
    check_values(cfg, scope=scope)
    if scope == 'mmpretrain':
        from ..classification.datasets import pass_num_classes
        pass_num_classes(cfg)
    cuda = torch.cuda.is_available()
    rewrites.default_compile(cfg, cuda)
    if auto_scale_lr:
        rewrites.enable_auto_scale_lr(cfg)
    if random_init and cfg.get('model') is not None:
        rewrites.strip_pretrained(cfg.model)
    rewrites.default_work_dir(cfg, work_dir)
    check_environment(cfg, 'cuda' if cuda else 'cpu')
    rewrites.set_precision(cfg, amp, fp32, cuda)
    if not cuda:
        rewrites.cpu_runtime(cfg, launcher)
    return cfg
