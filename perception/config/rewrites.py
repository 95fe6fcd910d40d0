"""Every change this project makes to a config after it is read, one named function each, each one
announced in the log (nothing is rewritten silently). ``prepare.prepare_config`` applies them for the
Runner; ``build.build_model`` applies ``replace_syncbn`` to models built outside it."""
import os.path as osp

from mmengine.logging import print_log

from .loading import ConfigError


def announce(msg: str, warn: bool = False):
    """A config change or finding, in the log (a warning with ``warn``): nothing happens silently."""
    print_log(msg, logger='current', level=30 if warn else 20)


def strip_pretrained(model_cfg) -> list:
    """``--random-init``: drop every ``init_cfg=dict(type='Pretrained', ...)`` of a model config (the
    released weights the shipped configs load), so the model is built with its own random
    initialisation; each one dropped is logged. Returns the checkpoints that will not be loaded."""
    dropped = []

    def walk(node, path):
        if isinstance(node, dict):
            ic = node.get('init_cfg')
            items = ic if isinstance(ic, (list, tuple)) else [ic]
            pre = [i for i in items if isinstance(i, dict) and i.get('type') == 'Pretrained']
            if pre:
                dropped.extend(f"{path}.init_cfg: {i.get('checkpoint')}" for i in pre)
                rest = [i for i in items if i not in pre and i is not None]
                node['init_cfg'] = rest if isinstance(ic, (list, tuple)) and rest else None
            for k, v in node.items():
                if k != 'init_cfg':
                    walk(v, f'{path}.{k}')
        elif isinstance(node, (list, tuple)):
            for i, v in enumerate(node):
                walk(v, f'{path}[{i}]')
    walk(model_cfg, 'model')
    for d in dropped:
        announce(f'--random-init: not loading {d} (random weights: for smoke runs, memory and speed, not for results)',
             warn=True)
    if not dropped:
        announce('--random-init: the config loads no pretrained weights; its own initialisation is used')
    return dropped


def enable_auto_scale_lr(cfg):
    """Turn on mmengine's linear lr scaling (lr x run batch / ``auto_scale_lr.base_batch_size``, the
    run batch being GPUs x ``train_dataloader.batch_size``), as mmseg's and mmpretrain's
    ``--auto-scale-lr`` do. Gradient accumulation counts (mmengine leaves it out): with
    ``optim_wrapper.accumulative_counts = k`` the base is divided by k, and the log says so."""
    asl = cfg.get('auto_scale_lr')
    if not isinstance(asl, dict) or not asl.get('base_batch_size'):
        raise ConfigError(f'{cfg.filename}: --auto-scale-lr needs auto_scale_lr = dict(base_batch_size=N) in the '
                          'config (the batch size its lr was set for)')
    asl['enable'] = True
    k = int((cfg.get('optim_wrapper') or {}).get('accumulative_counts', 1) or 1)
    if k > 1:
        asl['base_batch_size'] = asl['base_batch_size'] / k
        announce(f'--auto-scale-lr: gradient accumulation over {k} steps: the lr is scaled by GPUs x batch_size x '
             f'{k} / {asl["base_batch_size"] * k:g}')
    else:
        announce(f'--auto-scale-lr: the lr is scaled by GPUs x batch_size / {asl["base_batch_size"]:g}')
    return cfg


def default_compile(cfg, cuda: bool):
    """Compile the InternViT blocks by default where it pays off: on CUDA (H200: the 6B forward 1.30x,
    a block's training step 1.43x); CPUs gain little (docs/benchmarks.md), so they stay eager. A config
    or --compile / --no-compile that sets ``compile_blocks`` decides instead."""
    backbone = (cfg.get('model') or {}).get('backbone')
    kind = str(backbone.get('type', '')).split('.')[-1] if isinstance(backbone, dict) else None
    if kind not in ('InternViT', 'InternViTAdapter'):
        return cfg
    if 'compile_blocks' in backbone or not cuda:
        return cfg
    backbone['compile_blocks'] = True
    announce('compile_blocks: on (CUDA; --no-compile or model.backbone.compile_blocks=False runs the blocks eagerly)')
    return cfg


def default_work_dir(cfg, work_dir=None):
    """``--work-dir`` when given, else the config's ``work_dir``, else ``./work_dirs/<config name>``
    (mmseg's rule); announced when it comes from the rule."""
    if work_dir is not None:
        cfg.work_dir = work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = osp.join('./work_dirs', osp.splitext(osp.basename(cfg.filename or 'config'))[0])
        announce(f'work dir: {cfg.work_dir} (no --work-dir given)')
    return cfg


def set_precision(cfg, amp: bool = False, fp32: bool = False, cuda: bool = False):
    """``--fp32``: the plain ``OptimWrapper`` (no autocast); ``--amp``: bf16 autocast through
    ``AmpOptimWrapper``. Without CUDA, ``AmpOptimWrapper`` (which needs a GPU) becomes this project's
    ``BF16OptimWrapper`` (bf16 autocast on the CPU), with a warning when the CPU emulates bf16."""
    ow = cfg.get('optim_wrapper')
    if ow is None:
        return cfg
    if fp32:
        if ow.get('type') not in (None, 'OptimWrapper'):
            announce(f'--fp32: optim_wrapper {ow.get("type")} -> OptimWrapper (no autocast)')
        ow['type'] = 'OptimWrapper'
        for k in ('dtype', 'loss_scale'):
            ow.pop(k, None)
    elif amp and ow.get('type') in (None, 'OptimWrapper'):
        ow['type'] = 'AmpOptimWrapper'
        ow['dtype'] = 'bfloat16'
        announce('--amp: bf16 autocast (AmpOptimWrapper)')
    if ow.get('type') == 'AmpOptimWrapper' and not cuda:
        ow['type'] = 'BF16OptimWrapper'
        ow.pop('loss_scale', None)
        ow['dtype'] = 'bfloat16'
        announce('no CUDA: bf16 autocast through BF16OptimWrapper (AmpOptimWrapper needs a GPU)')
        from ..engine.optim_wrapper import cpu_bf16_note, cpu_has_native_bf16
        if not cpu_has_native_bf16():
            announce(cpu_bf16_note() + ': pass --fp32 to train in fp32', warn=True)
    return cfg


def replace_syncbn(model_cfg, why: str) -> int:
    """``SyncBN`` -> ``BN`` in a model config (in place), announced with ``why``; returns how many.
    SyncBatchNorm has no CPU implementation, and a model built outside the distributed Runner (inference,
    export, planning) has nothing to synchronise with: its eval numerics are the same."""
    found = []

    def walk(node, path):
        if isinstance(node, dict):
            for k, v in node.items():
                if k == 'type' and v == 'SyncBN':
                    node[k] = 'BN'
                    found.append(path)
                else:
                    walk(v, f'{path}.{k}')
        elif isinstance(node, (list, tuple)):
            for i, v in enumerate(node):
                walk(v, f'{path}[{i}]')
    walk(model_cfg, 'model')
    if found:
        announce(f'SyncBN -> BN ({why}): {", ".join(p.rsplit(".", 1)[0] for p in found)}')
    return len(found)


def cpu_runtime(cfg, launcher: str = 'none'):
    """Without CUDA: gloo instead of NCCL, no cuDNN, BN instead of SyncBN (per-process batch statistics;
    GPU runs keep SyncBN), and DDP without device ids. Announced in one line."""
    env = cfg.setdefault('env_cfg', {})
    env.setdefault('dist_cfg', {})['backend'] = 'gloo'
    env['cudnn_benchmark'] = False
    replace_syncbn(cfg.get('model', {}), 'no CUDA: per-process batch statistics')
    if launcher != 'none':
        wrapper = cfg.get('model_wrapper_cfg') or {}
        wrapper.setdefault('type', 'MMDistributedDataParallel')
        wrapper['device_ids'] = None
        cfg.model_wrapper_cfg = wrapper
    announce('no CUDA: distributed backend gloo, cudnn off' + (', DDP without device ids' if launcher != 'none' else ''))
    return cfg


def safe_checkpoints(cfg):
    """A config that names mmengine's ``CheckpointHook`` (it deletes before it writes and writes in
    place) gets its subclass ``SafeCheckpointHook`` (same arguments: atomic saves, pruning after the new
    checkpoint is complete; perception/engine/checkpoints.py). The shipped configs name it themselves."""
    ck = (cfg.get('default_hooks') or {}).get('checkpoint')
    if isinstance(ck, dict) and ck.get('type') in ('CheckpointHook', 'mmengine.CheckpointHook'):
        ck['type'] = 'SafeCheckpointHook'
        announce('checkpoints: SafeCheckpointHook (atomic saves, old ones pruned after the new one is complete) in '
             'place of CheckpointHook')
    return cfg


def runner_for_testing(cfg):
    """Evaluation shards nothing: a ``FlexibleRunner`` config (FSDP / DeepSpeed training) is tested by the
    plain Runner (DDP when distributed) on the same model; announced."""
    if cfg.get('runner_type') == 'FlexibleRunner':
        strategy = (cfg.pop('strategy', None) or {}).get('type')
        cfg.pop('runner_type')
        announce(f"testing with mmengine's Runner; the config's {strategy} is for training")
    return cfg
