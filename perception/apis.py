"""The train / evaluate entry points over mmengine's Runner (what ``tools/train.py`` and
``tools/test.py`` call). Config handling lives in ``perception.config``."""
import contextlib
import os
import os.path as osp
from typing import Optional

from mmengine.logging import print_log

from .common.files import OUTPUT_RECORD, OutputRecord, lock_output_folder, refuse_not_ours
from .config import ConfigError, build_runner, check_weights_fit, prepare_config
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
    from .engine.checkpoints import WorkDirError, lock_work_dir
    if osp.exists(cfg.work_dir) and not osp.isdir(cfg.work_dir):
        raise WorkDirError(f'work dir {cfg.work_dir} is a file: expected a folder (or a path that does not exist)')
    created = not osp.isdir(cfg.work_dir)
    # one run per work dir, taken before the checkpoint checks below (two runs started together both
    # passed them); global rank 0 holds it for every rank
    lock = lock_work_dir(cfg.work_dir) if launch_rank(launcher) == 0 else None
    try:
        _check_start(cfg, resume)
        if cfg.get('load_from'):  # --resume (the newest, or PATH) and the config's load_from
            check_weights_fit(cfg, cfg.load_from)
        runner = build_runner(cfg)
        runner.train()
        finish_dist()
    finally:
        if lock is not None:
            lock.release()
            if created:
                with contextlib.suppress(OSError):
                    os.rmdir(cfg.work_dir)  # refused before anything was written: no empty folder left
    return runner


def launch_rank(launcher: str) -> int:
    """This process's global rank as its launcher set it (the process group starts later, in the Runner)."""
    if launcher == 'none':
        return 0
    for var in ('RANK', 'SLURM_PROCID', 'OMPI_COMM_WORLD_RANK', 'PMI_RANK'):
        if os.environ.get(var, '').isdigit():
            return int(os.environ[var])
    return 0


def _check_start(cfg, resume):
    """Where training starts: ``--resume`` (the newest complete checkpoint, or PATH), or the beginning,
    which is refused over existing checkpoints (it would overwrite them, one by one)."""
    from .engine.checkpoints import WorkDirError, checkpoints_in, resume_checkpoint
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
    if checkpoint:  # the strict loaders resample the position embedding to the model's grid
        check_weights_fit(cfg, checkpoint, resampled=('backbone.pos_embed',))
    if cfg.get('default_scope') == 'mmpretrain':
        if tta or out:
            raise ConfigError(f'{cfg.filename}: {"--tta" if tta else "--out"} is for segmentation configs')
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
    created = False
    if out:
        if osp.exists(out) and not osp.isdir(out):
            raise NotADirectoryError(f'--out {out} is a file: expected a folder for the label maps')
        cfg.test_evaluator['output_dir'] = out
        cfg.test_evaluator['keep_results'] = True
        created = not osp.isdir(out)
    runner = build_runner(cfg)
    try:
        claim = EvalOutputs(runner, out, launch_rank(launcher)) if out else None
    except BaseException:
        if created:
            with contextlib.suppress(OSError):
                os.rmdir(out)  # made by mmseg's metric; refused before anything was written in it
        raise
    try:
        segmentor = runner.model.module if tta else runner.model
        if random_init:
            segmentor.init_weights()
        else:
            load_segmentor_checkpoint(segmentor, checkpoint)
        metrics = runner.test()
    finally:
        if claim is not None:
            claim.finish()
    if claim is not None:
        claim.report()
    return metrics


class EvalOutputs:
    """``tools/test.py --out DIR``: mmseg's metric writes ``DIR/<image name>.png`` per test image
    (``IoUMetric.process``). Before the model is loaded, with the dataset's file list: two images of one
    name, and names that exist in DIR but that this project did not write there (not in
    ``DIR/.perception-outputs.json``, or changed since: a ground-truth folder, a user's file), are
    refused in one line, every file untouched. Rank 0 holds ``DIR/.perception-outputs.lock`` (one run
    writes into DIR at a time), marks the names pending in the record before the run (a killed run's
    outputs stay ours) and records their sha256 after it."""

    def __init__(self, runner, out: str, rank: int):
        self.out, self.rank, self.lock, self.record = out, rank, None, None
        ds = runner.test_loop.dataloader.dataset  # builds the loop, as runner.test() would
        by_name = {}
        for i in range(len(ds)):
            img = ds.get_data_info(i)['img_path']
            by_name.setdefault(osp.splitext(osp.basename(img))[0] + '.png', []).append(img)
        clash = {k: v for k, v in by_name.items() if len(v) > 1}
        if clash:
            name, same = next(iter(clash.items()))
            raise ValueError(f'{", ".join(same)} would all write {name} in --out {out} ({len(clash)} such name(s): '
                             'predictions are named after the image file): test them into separate --out folders')
        self.names = sorted(by_name)
        if rank == 0:
            self.lock = lock_output_folder(out, lambda m, level: print_log(m, logger='current', level=level))
        try:
            record = OutputRecord(out)
            refuse_not_ours(record, self.names)  # every rank: a refusal stops them all
            self.existed = {n for n in self.names if osp.isfile(osp.join(out, n))}
            if rank == 0:
                record.expect(self.names, 'tools/test.py')
                self.record = record
        except BaseException:
            self.finish()
            raise

    def finish(self):
        """Record what the run wrote (sha256; pending names whose file is absent are dropped); free the lock."""
        if self.record is not None:
            self.record.settle(tool='tools/test.py')
        if self.lock is not None:
            self.lock.release()
            self.lock = None

    def report(self):
        if self.rank == 0:
            n = sum(osp.isfile(osp.join(self.out, k)) for k in self.names)
            print_log(f'wrote {n} label maps into {self.out} ({len(self.existed)} of them replaced what an earlier '
                      f'run wrote; listed in {OUTPUT_RECORD})', logger='current')
