"""The train / evaluate entry points over mmengine's Runner (what ``tools/train.py`` and
``tools/test.py`` call). Config handling lives in ``perception.config``."""
import os.path as osp
from typing import Optional

from mmengine.logging import print_log

from .config import ConfigError, build_runner, prepare_config
from .config.build import finish_dist
from .config.rewrites import runner_for_testing, safe_checkpoints


def train(config, work_dir: Optional[str] = None, resume=False, amp: bool = False, fp32: bool = False,
          cfg_options: Optional[dict] = None, launcher: str = 'none', auto_scale_lr: bool = False,
          random_init: bool = False):
    """Train a config; returns the Runner. ``resume``: True (latest in work_dir) or a checkpoint path;
    ``auto_scale_lr``: scale the lr linearly to the run's batch (``enable_auto_scale_lr``);
    ``random_init``: without the config's pretrained weights (``strip_pretrained``)."""
    cfg = prepare_config(config, work_dir, amp, fp32, cfg_options, launcher, auto_scale_lr, random_init)
    strategy = (cfg.get('strategy') or {}).get('type')
    if launcher == 'none' and strategy in ('PortableFSDPStrategy', 'FSDPStrategy', 'DeepSpeedStrategy'):
        raise ConfigError(f'{cfg.filename}: {strategy} trains under torchrun: tools/dist_train.sh {cfg.filename} '
                          'NUM_PROCS (1 for a single GPU or CPU process)')
    safe_checkpoints(cfg)
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
        check_resumable(resume)
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
    finish_dist()
    return runner


def check_resumable(path: str):
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


def evaluate(config, checkpoint: Optional[str], work_dir: Optional[str] = None, cfg_options: Optional[dict] = None,
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
    runner_for_testing(cfg)
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
