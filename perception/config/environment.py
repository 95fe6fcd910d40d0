"""What a config asks of this machine, checked before anything is built or written: an attention kernel
(``attn_backend='xformers'``, or ``$PERCEPTION_ATTN``), a compiler (``compile_blocks='force'``), an
optional package (deepspeed for ``DeepSpeedStrategy``), torchrun's environment (``--launcher pytorch``). What is missing is an ``UnavailableError``
(one line from the tools, exit 2) saying what to install or what to ask for instead; a value that is
not one of the choices is a ``ConfigError``."""
from typing import Optional

from ..common.errors import UnavailableError
from .loading import ConfigError


def internvit_backbone(cfg) -> Optional[dict]:
    """The model's backbone when it runs InternViT blocks (``InternViT``, ``InternViTAdapter``, or any
    backbone given ``attn_backend`` / ``compile_blocks``)."""
    backbone = (cfg.get('model') or {}).get('backbone')
    if isinstance(backbone, dict) and (str(backbone.get('type', '')).split('.')[-1].startswith('InternViT')
                                       or 'attn_backend' in backbone or 'compile_blocks' in backbone):
        return backbone
    return None


def check_attention(backbone: dict, device_type: Optional[str]):
    """``device_type`` None: only what does not depend on the device (xformers importable)."""
    from ..layers import attention as A
    name = backbone.get('attn_backend', 'auto')
    try:
        requested = A.requested_attn_backend(name)
    except ValueError as e:  # not one of the choices (the argument or $PERCEPTION_ATTN)
        raise ConfigError(f'model.backbone.attn_backend={name!r}: {e}') from e
    if requested != 'xformers':
        return
    what = ("model.backbone.attn_backend='xformers'" if name == 'xformers' else
            f"model.backbone.attn_backend={name!r} with PERCEPTION_ATTN=xformers")
    if not A.xformers_available():
        raise UnavailableError(f"{what}: xformers is not importable here: pip install 'perception[xformers]' "
                               "(CUDA machines), or use 'sdpa' / 'auto'")
    if device_type is None:
        return
    if device_type != 'cuda':
        raise UnavailableError(f"{what}: xformers has no {device_type} kernels and this run has no CUDA device; "
                               "use 'sdpa' or 'auto'")
    why = A.xformers_unusable_reason('cuda')
    if why is not None:
        raise UnavailableError(f"{what}: {why}; reinstall xformers for this torch, or use 'sdpa' / 'auto'")


def check_compiler(backbone: dict, device_type: Optional[str]):
    from ..layers import compile as C
    mode = backbone.get('compile_blocks', False)
    try:
        C.check_compile_mode(mode)
    except ValueError as e:
        raise ConfigError(f'model.backbone.{e}') from e
    if mode != 'force' or device_type is None:
        return
    why = C.compile_unavailable_reason(device_type)
    if why is not None:
        raise UnavailableError(f"model.backbone.compile_blocks='force' (--compile force): {why}; install it, or "
                               'use --compile (compile_blocks=True), which runs the blocks eagerly where they cannot '
                               'compile')


TORCHRUN_ENV = ('RANK', 'WORLD_SIZE', 'MASTER_ADDR', 'MASTER_PORT')


def check_launch(cfg):
    """``--launcher pytorch`` outside torchrun: mmengine's ``init_dist`` fails with ``KeyError: 'RANK'``."""
    import os
    if cfg.get('launcher') == 'pytorch':
        missing = [k for k in TORCHRUN_ENV if k not in os.environ]
        if missing:
            raise UnavailableError(f'--launcher pytorch but {", ".join(missing)} not set: start it under torchrun '
                                   '(tools/dist_train.sh CONFIG NUM_PROCS), or without --launcher for one process')


def check_packages(cfg):
    strategy = (cfg.get('strategy') or {}).get('type')
    if strategy == 'DeepSpeedStrategy':
        import importlib.util
        if importlib.util.find_spec('deepspeed') is None:
            raise UnavailableError(f'{cfg.filename}: DeepSpeedStrategy needs the deepspeed package, which is not '
                                   'installed here (pip install deepspeed on the GPU machines), or use the FSDP config')


def check_environment(cfg, device_type: Optional[str], runner: bool = True):
    """Everything the config asks of this machine for a run on ``device_type`` ('cuda', 'cpu'; None:
    not known yet, only what does not depend on it; 'meta': nothing runs, nothing is checked);
    ``runner``: the training strategy's packages too (a model built outside the Runner needs none)."""
    if device_type == 'meta':
        return
    backbone = internvit_backbone(cfg)
    if backbone is not None:
        check_attention(backbone, device_type)
        check_compiler(backbone, device_type)
    if runner:
        check_launch(cfg)
        check_packages(cfg)
