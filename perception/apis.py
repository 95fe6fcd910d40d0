"""Train / test entry points over mmengine's Runner (what ``tools/train.py`` and ``tools/test.py`` call)."""
import os.path as osp
from typing import Optional

import torch
from mmengine.config import Config
from mmengine.config import DictAction as _MMDictAction
from mmengine.logging import print_log

from .deploy.cli import InputError


def _replace_syncbn(obj):
    if isinstance(obj, dict):
        for k, v in obj.items():
            if k == 'type' and v == 'SyncBN':
                obj[k] = 'BN'
            else:
                _replace_syncbn(v)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            _replace_syncbn(v)


class ConfigError(InputError, ValueError):
    """A config value that would fail deep inside a build, or be ignored: the message names its path."""


def load_config(config) -> Config:
    """``Config.fromfile`` with one-line errors naming the file: missing, not a ``.py`` / ``.json`` /
    ``.yaml`` config, or one that does not parse (file and line)."""
    if isinstance(config, Config):
        return config
    path = str(config)
    if not osp.isfile(path):
        raise ConfigError(f'config not found: {path}' + (' (a folder: give the .py file)' if osp.isdir(path) else ''))
    if osp.splitext(path)[1] not in ('.py', '.json', '.yaml', '.yml'):
        raise ConfigError(f'{path}: not a config file (expected .py, .json or .yaml)')
    try:
        return Config.fromfile(path)
    except SyntaxError as e:
        where = e.filename if e.filename and not e.filename.startswith('<') else path
        raise ConfigError(f'{where}:{e.lineno}: {e.msg} (the config does not parse)') from e
    except (KeyError, NameError, ImportError, FileNotFoundError, TypeError, AttributeError) as e:
        raise ConfigError(f'{path}: cannot be read as a config: {type(e).__name__}: {e}') from e


COMPONENTS = ('backbone', 'neck', 'decode_head', 'auxiliary_head', 'head', 'data_preprocessor')


def _class_arguments(cls):
    """Keyword arguments ``cls(...)`` accepts, following ``**kwargs`` up the MRO; ``complete`` is False
    when some ``**kwargs`` reach a class that takes anything (then nothing can be refused)."""
    import inspect
    known, complete = [], False
    for klass in (cls.__mro__ if inspect.isclass(cls) else ()):  # **kwargs go to the base class
        if '__init__' not in vars(klass):
            continue
        try:
            params = inspect.signature(klass.__init__).parameters
        except (TypeError, ValueError):  # a C-implemented __init__
            break
        known += [k for k, p in params.items() if k != 'self' and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)
                  and k not in known]
        if not any(p.kind == p.VAR_KEYWORD for p in params.values()):
            complete = True
            break
    return known, complete


def _check_keys(node: dict, path: str, cls, name: str, allowed=(), closed: bool = False):
    """``closed``: refuse unknown keys even where ``**kwargs`` would swallow them (CheckpointHook's
    go to a deprecated file-client argument: a misspelt ``interval`` would vanish there)."""
    import difflib
    known, complete = _class_arguments(cls)
    for k in (node if complete or closed else ()):
        if k not in known and k not in ('type', '_scope_', '_delete_') + tuple(allowed):
            near = difflib.get_close_matches(k, known, 1)
            raise ConfigError(f'{path}.{k}: {name} has no argument {k!r}'
                              + (f' (did you mean {near[0]!r}?)' if near else f'; it takes {known}'))


def _registry(scope: str, name: str):
    import importlib
    return getattr(importlib.import_module(f'{scope}.registry'), name)


def check_model_keys(node, path: str = 'model', scope: str = 'mmseg'):
    """Every key of the model dict and of its components (``backbone``, ``neck``, heads, data
    preprocessor) is a parameter of that class or of the bases its ``**kwargs`` go to: a
    misspelt key fails here, naming its path and the closest known name, instead of as a TypeError
    inside mmengine's build. Nested builder dicts (``norm_cfg``, ``loss_decode``, ...) are left to
    their builders."""
    if isinstance(node, (list, tuple)):  # e.g. several auxiliary heads
        for i, v in enumerate(node):
            if isinstance(v, dict):
                check_model_keys(v, f'{path}[{i}]', scope)
        return
    if not isinstance(node, dict):
        return
    typ = node.get('type')
    if isinstance(typ, str):
        _check_keys(node, path, _registry(scope, 'MODELS').get(typ), typ)
    if path == 'model':
        for k in COMPONENTS:
            if k in node:
                check_model_keys(node[k], f'{path}.{k}', scope)


def check_runner_keys(cfg, scope: str = 'mmseg'):
    """The rest of a config the way :func:`check_model_keys` checks the model: a top-level key one
    typo away from a Runner argument (``trian_cfg``), and the keys of the loops (``train_cfg`` ...),
    ``default_hooks``, ``custom_hooks``, ``optim_wrapper`` and its optimizer, and ``param_scheduler``
    entries, against the classes they build. Other top-level keys are the config's own variables."""
    import difflib
    from mmengine.runner import FlexibleRunner, Runner
    runner_args = sorted(set(_class_arguments(Runner)[0]) | set(_class_arguments(FlexibleRunner)[0]))
    extra = ('default_scope', 'custom_imports', 'runner_type', 'launcher', 'resume', 'load_from', 'work_dir')
    for k in cfg.keys():
        if k in runner_args or k in extra or k.startswith('_'):
            continue
        near = difflib.get_close_matches(k, runner_args, 1, cutoff=0.85)
        if near:
            raise ConfigError(f'{k}: not a Runner setting (did you mean {near[0]!r}?); a variable of the config '
                              'itself would be ignored by the Runner')
    loops = {'train_cfg': None, 'val_cfg': 'ValLoop', 'test_cfg': 'TestLoop'}
    for key, default in loops.items():
        node = cfg.get(key)
        if not isinstance(node, dict):
            continue
        typ = node.get('type') or default or ('EpochBasedTrainLoop' if node.get('by_epoch', True) else
                                              'IterBasedTrainLoop')
        cls = _registry(scope, 'LOOPS').get(typ)
        if cls is not None:
            _check_keys(node, key, cls, typ, allowed=('by_epoch', 'runner', 'dataloader', 'evaluator'))
    hooks = [(f'default_hooks.{k}', v) for k, v in (cfg.get('default_hooks') or {}).items()]
    hooks += [(f'custom_hooks[{i}]', v) for i, v in enumerate(cfg.get('custom_hooks') or [])]
    for path, node in hooks:
        if isinstance(node, dict) and isinstance(node.get('type'), str):
            cls = _registry(scope, 'HOOKS').get(node['type'])
            if cls is not None:
                _check_keys(node, path, cls, node['type'], allowed=('priority',),
                            closed=node['type'].split('.')[-1] in ('CheckpointHook', 'SafeCheckpointHook'))
    ow = cfg.get('optim_wrapper')
    if isinstance(ow, dict) and 'type' in ow and not isinstance(ow.get('optimizer'), type(None)):
        cls = _registry(scope, 'OPTIM_WRAPPERS').get(ow.get('type', 'OptimWrapper'))
        if cls is not None:
            _check_keys(ow, 'optim_wrapper', cls, ow.get('type', 'OptimWrapper'),
                        allowed=('constructor', 'paramwise_cfg'))
        opt = ow.get('optimizer')
        if isinstance(opt, dict) and isinstance(opt.get('type'), str):
            cls = _registry(scope, 'OPTIMIZERS').get(opt['type'])
            if cls is not None:
                _check_keys(opt, 'optim_wrapper.optimizer', cls, opt['type'], allowed=('params',))
    scheds = cfg.get('param_scheduler')
    for i, node in enumerate(scheds if isinstance(scheds, (list, tuple)) else [scheds] if scheds else []):
        if isinstance(node, dict) and isinstance(node.get('type'), str):
            cls = _registry(scope, 'PARAM_SCHEDULERS').get(node['type'])
            if cls is not None:
                _check_keys(node, f'param_scheduler[{i}]', cls, node['type'],
                            allowed=('convert_to_iter_based', 'optimizer', 'param_name'))


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
        print_log(f'--random-init: not loading {d} (random weights: for smoke runs, memory and speed, not '
                  'for results)', logger='current', level=30)
    if not dropped:
        print_log('--random-init: the config loads no pretrained weights; its own initialisation is used',
                  logger='current')
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
        print_log(f'--auto-scale-lr: gradient accumulation over {k} steps: the lr is scaled by GPUs x batch_size x '
                  f'{k} / {asl["base_batch_size"] * k:g}', logger='current')
    return cfg


def prepare_config(config, work_dir: Optional[str] = None, amp: bool = False, fp32: bool = False,
                   cfg_options: Optional[dict] = None, launcher: str = 'none', auto_scale_lr: bool = False,
                   random_init: bool = False) -> Config:
    """Load a config and adapt it to this machine (CPU: gloo, BN instead of SyncBN, bf16 autocast
    through ``BF16OptimWrapper`` since mmengine's AmpOptimWrapper needs CUDA). ``auto_scale_lr``:
    mmengine's linear lr scaling (``--auto-scale-lr``), see ``enable_auto_scale_lr``; ``random_init``:
    no pretrained weights are loaded (``strip_pretrained``)."""
    cfg = load_config(config)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    cfg.launcher = launcher
    if cfg.get('model') is not None:
        from .setup_env import register_all_modules
        register_all_modules()
        check_model_keys(cfg.model, scope=cfg.get('default_scope') or 'mmseg')
    check_runner_keys(cfg, scope=cfg.get('default_scope') or 'mmseg')
    if cfg.get('default_scope') == 'mmpretrain':
        from .classification.datasets import pass_num_classes
        pass_num_classes(cfg)
    _default_compile(cfg)
    if auto_scale_lr:
        enable_auto_scale_lr(cfg)
    if random_init and cfg.get('model') is not None:
        strip_pretrained(cfg.model)
    if work_dir is not None:
        cfg.work_dir = work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = osp.join('./work_dirs', osp.splitext(osp.basename(cfg.filename or 'config'))[0])
    cuda = torch.cuda.is_available()
    strategy = (cfg.get('strategy') or {}).get('type')
    if strategy == 'DeepSpeedStrategy':
        try:
            import deepspeed  # noqa: F401
        except ImportError as e:
            raise RuntimeError(f'{cfg.filename}: DeepSpeedStrategy needs the deepspeed package '
                               '(pip install deepspeed on the GPU machines), or use the FSDP config') from e
    ow = cfg.get('optim_wrapper')
    if ow is not None:
        if fp32:
            ow['type'] = 'OptimWrapper'
            for k in ('dtype', 'loss_scale'):
                ow.pop(k, None)
        elif amp and ow.get('type') in (None, 'OptimWrapper'):
            ow['type'] = 'AmpOptimWrapper'
            ow['dtype'] = 'bfloat16'
        if ow.get('type') == 'AmpOptimWrapper' and not cuda:
            ow['type'] = 'BF16OptimWrapper'
            ow.pop('loss_scale', None)
            ow['dtype'] = 'bfloat16'
            print_log('no CUDA: bf16 autocast through BF16OptimWrapper (AmpOptimWrapper needs a GPU)',
                      logger='current')
            from .engine.optim_wrapper import cpu_bf16_note, cpu_has_native_bf16
            if not cpu_has_native_bf16():
                print_log(cpu_bf16_note() + ': pass --fp32 to train in fp32', logger='current', level=30)
    if not cuda:
        cfg.setdefault('env_cfg', {}).setdefault('dist_cfg', {})['backend'] = 'gloo'
        cfg.env_cfg['cudnn_benchmark'] = False
        # SyncBatchNorm has no CPU implementation: per-process BatchNorm instead (statistics of the
        # local batch; GPU runs keep SyncBN)
        _replace_syncbn(cfg.get('model', {}))
        if launcher != 'none':
            wrapper = cfg.get('model_wrapper_cfg') or {}
            wrapper.setdefault('type', 'MMDistributedDataParallel')
            wrapper['device_ids'] = None
            cfg.model_wrapper_cfg = wrapper
    return cfg


def _init_cpu_dist(launcher: str):
    """mmengine's init_dist calls torch.cuda.set_device; on CPU start gloo ourselves."""
    if launcher == 'none' or torch.cuda.is_available():
        return
    import torch.distributed as dist
    if not dist.is_initialized():
        dist.init_process_group(backend='gloo')


def build_runner(cfg: Config):
    from .setup_env import register_all_modules
    register_all_modules()  # configs without custom_imports build too
    from mmengine.runner import Runner
    _init_cpu_dist(cfg.get('launcher', 'none'))
    if 'runner_type' in cfg:
        from mmengine.registry import RUNNERS
        return RUNNERS.build(cfg)
    return Runner.from_cfg(cfg)


def train(config, work_dir: Optional[str] = None, resume=False, amp: bool = False, fp32: bool = False,
          cfg_options: Optional[dict] = None, launcher: str = 'none', auto_scale_lr: bool = False,
          random_init: bool = False):
    """Train a config; returns the Runner. ``resume``: True (latest in work_dir) or a checkpoint path;
    ``auto_scale_lr``: scale the lr linearly to the run's batch (``enable_auto_scale_lr``);
    ``random_init``: without the config's pretrained weights (``strip_pretrained``)."""
    cfg = prepare_config(config, work_dir, amp, fp32, cfg_options, launcher, auto_scale_lr, random_init)
    strategy = (cfg.get('strategy') or {}).get('type')
    if launcher == 'none' and strategy in ('PortableFSDPStrategy', 'FSDPStrategy', 'DeepSpeedStrategy'):
        raise RuntimeError(f'{cfg.filename}: {strategy} trains under torchrun: tools/dist_train.sh {cfg.filename} '
                           'NUM_PROCS (1 for a single GPU or CPU process)')
    _safe_checkpoints(cfg)
    from .engine.checkpoints import WorkDirError, checkpoints_in, resume_checkpoint
    if osp.exists(cfg.work_dir) and not osp.isdir(cfg.work_dir):
        raise WorkDirError(f'work dir {cfg.work_dir} is a file: expected a folder (or a path that does not exist)')
    if resume is True or resume == 'auto':
        path = resume_checkpoint(cfg.work_dir)  # the newest complete one, said in the log; None: none
        if path is None:
            print_log(f'--resume: no checkpoint in {cfg.work_dir}: training from the start', logger='current')
        cfg.resume = path is not None
        cfg.load_from = path
    elif resume:
        _check_resumable(resume)
        cfg.resume = True
        cfg.load_from = resume
    else:
        existing = checkpoints_in(cfg.work_dir)
        if existing:  # training from the start would overwrite them, one by one
            names = ', '.join(osp.basename(p) for _, p in existing[:3]) + (', ...' if len(existing) > 3 else '')
            raise WorkDirError(f'work dir {cfg.work_dir} already holds checkpoints ({names}): --resume continues '
                               'from the newest; to start again, use another --work-dir or move them away')
    runner = build_runner(cfg)
    runner.train()
    _finish_dist()
    return runner


def _check_resumable(path: str):
    """``--resume PATH`` continues a run: PATH must be a training checkpoint (``meta`` and ``state_dict``;
    a sharded folder is checked when it is loaded). Backbone or exported weights are refused, naming
    the file and what to use instead."""
    from .engine.checkpoints import WorkDirError
    if osp.isdir(path):
        return
    from .checkpoint.safe_load import torch_load
    obj, _ = torch_load(path)
    if not (isinstance(obj, dict) and 'meta' in obj and 'state_dict' in obj):
        keys = sorted(map(str, obj))[:6] if isinstance(obj, dict) else type(obj).__name__
        raise WorkDirError(f'--resume {path}: not a training checkpoint of this project (no meta / state_dict; '
                           f'holds {keys}); to start from these weights, name them in the config '
                           "(model.backbone.init_cfg or load_from) and train without --resume")


def _safe_checkpoints(cfg):
    """mmengine's CheckpointHook deletes before it writes and writes in place; its subclass
    SafeCheckpointHook (same arguments) saves atomically and prunes after (perception/engine/checkpoints.py)."""
    ck = (cfg.get('default_hooks') or {}).get('checkpoint')
    if isinstance(ck, dict) and ck.get('type') in ('CheckpointHook', 'mmengine.CheckpointHook'):
        ck['type'] = 'SafeCheckpointHook'
        print_log('checkpoints: SafeCheckpointHook (atomic saves, old ones pruned after the new one is '
                  'complete) in place of CheckpointHook', logger='current')


class DictAction(_MMDictAction):
    """mmengine's ``--cfg-options KEY=VALUE ...`` parser; a malformed item is an argparse error naming it
    (mmengine fails with ``not enough values to unpack``)."""

    def __call__(self, parser, namespace, values, option_string=None):
        for kv in values:
            if '=' not in kv or not kv.split('=', 1)[0].strip():
                parser.error(f'{option_string}: expected KEY=VALUE, got {kv!r}')
        super().__call__(parser, namespace, values, option_string)


def add_compile_argument(parser):
    """``--compile [force]`` / ``--no-compile`` of the tools: ``model.backbone.compile_blocks`` (True, or
    'force': fail instead of running eagerly where the platform cannot compile; False: eager)."""
    g = parser.add_mutually_exclusive_group()
    g.add_argument('--compile', nargs='?', const=True, default=None, choices=[True, 'force'], metavar='force',
                   type=lambda v: 'force' if v == 'force' else v,
                   help="compile the backbone's blocks (one torch.compile of the block body shared by all "
                        "blocks); without a C++ compiler / triton it warns and runs eagerly, '--compile force' "
                        "fails instead. Default: on with CUDA (where it pays off), off on CPU")
    g.add_argument('--no-compile', dest='compile', action='store_const', const=False,
                   help='run the blocks eagerly, also on CUDA')


def _default_compile(cfg):
    """Compile the InternViT blocks by default where it pays off: on CUDA (H200: the 6B forward 1.30x,
    a block's training step 1.43x); CPUs gain little (docs/benchmarks.md), so they stay eager. A config
    or --compile / --no-compile that sets ``compile_blocks`` decides instead."""
    backbone = (cfg.get('model') or {}).get('backbone')
    if not isinstance(backbone, dict) or str(backbone.get('type', '')).split('.')[-1] != 'InternViT':
        return
    if 'compile_blocks' in backbone or not torch.cuda.is_available():
        return
    backbone['compile_blocks'] = True
    print_log('compile_blocks: on (CUDA; --no-compile or model.backbone.compile_blocks=False runs the '
              'blocks eagerly)', logger='current')


def compile_options(compile_blocks, cfg_options: Optional[dict] = None) -> Optional[dict]:
    """``cfg_options`` with ``model.backbone.compile_blocks`` set when ``--compile`` was given."""
    if compile_blocks is None:
        return cfg_options
    return dict(cfg_options or {}, **{'model.backbone.compile_blocks': compile_blocks})


def _finish_dist():
    """Let every rank reach the end before any tears the process group down (a rank exiting while
    another is still in a gloo collective aborts it)."""
    import torch.distributed as dist
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def test(config, checkpoint: Optional[str], work_dir: Optional[str] = None, cfg_options: Optional[dict] = None,
         launcher: str = 'none', show_dir: Optional[str] = None, out: Optional[str] = None,
         random_init: bool = False, tta: bool = False):
    """Evaluate a checkpoint strictly; returns metrics. Segmentors: this project's or InternVL's ADE20K
    releases (format C); classifiers: this project's, heads from tools/linear_probe.py, or format D.
    ``random_init`` (no checkpoint): the model's own random initialisation, for smoke runs; ``tta``:
    multi-scale + flip test-time augmentation (segmentors, ``perception.segmentation.tta``)."""
    from .classification.checkpoint import load_classifier_checkpoint
    from .segmentation.checkpoint import load_segmentor_checkpoint
    if bool(checkpoint) == bool(random_init):
        raise ConfigError('give a CHECKPOINT or --random-init (one of them)')
    cfg = prepare_config(config, work_dir, False, False, cfg_options, launcher, random_init=random_init)
    if cfg.get('runner_type') == 'FlexibleRunner':
        # evaluation shards nothing: the plain Runner (DDP when distributed) runs the same model
        strategy = (cfg.pop('strategy', None) or {}).get('type')
        cfg.pop('runner_type')
        print_log(f'testing with mmengine\'s Runner; the config\'s {strategy} is for training', logger='current')
    if cfg.get('default_scope') == 'mmpretrain':
        if tta:
            raise ConfigError(f'{cfg.filename}: --tta is for segmentation configs')
        cfg.load_from = None
        runner = build_runner(cfg)
        if random_init:
            runner.model.init_weights()
        else:
            load_classifier_checkpoint(runner.model, checkpoint)
        return runner.test()
    cfg.load_from = None
    if tta:
        from .segmentation.tta import enable_tta
        enable_tta(cfg)
        import math
        views = math.prod(len(t) for t in cfg.tta_pipeline[-1]['transforms'])
        print_log(f'test-time augmentation: {views} views per image, softmax averaged ({cfg.model.type})',
                  logger='current')
    if show_dir:
        vis = cfg.default_hooks.setdefault('visualization', dict(type='SegVisualizationHook'))
        vis['draw'] = True
        vis['interval'] = 1
        cfg.visualizer['save_dir'] = show_dir
    if out:
        cfg.test_evaluator['output_dir'] = out
        cfg.test_evaluator['keep_results'] = True
    runner = build_runner(cfg)
    segmentor = runner.model.module if tta else runner.model
    if random_init:
        segmentor.init_weights()
    else:
        load_segmentor_checkpoint(segmentor, checkpoint)
    return runner.test()
