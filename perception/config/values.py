"""Config values checked before anything is built or written (``prepare_config``, train and test): the
types and ranges mmengine and torch would otherwise fail on deep inside a build, after the work dir was
made (a ``TypeError``, a ``ZeroDivisionError``), and the settings that would make a run do nothing or
the wrong thing without a word. Each refusal is a ``ConfigError`` naming the key, the value and what
was expected; what is merely surprising is announced in the log.

- schedule: ``train_cfg`` (the loop, ``max_iters`` / ``max_epochs`` >= 1, ``val_interval``,
  ``val_begin``), the checkpoint and logger hooks, and every ``param_scheduler`` entry (a schedule that
  ends before it begins, or one in epochs under an iteration loop, never acts);
- optimizer: ``lr`` > 0, ``weight_decay`` >= 0, ``momentum`` and ``betas`` in [0, 1), ``eps`` >= 0,
  Nesterov with momentum; ``accumulative_counts`` >= 1, ``clip_grad.max_norm`` > 0, the AMP ``dtype``;
- ``randomness``: ``seed`` None or an int in [0, 2**32), ``deterministic`` / ``diff_rank_seed`` bools;
- the data loaders' ``batch_size`` >= 1 and ``num_workers`` >= 0 (``persistent_workers`` needs one);
- class counts (``classes``): each head's ``num_classes`` against the classes of every loader's
  dataset, the other heads, the ``CheckSegMap`` steps and mmpretrain's ``data_preprocessor``.

Validation: mmengine validates after the last iteration (epoch) whatever ``val_interval`` says, so a
``val_interval`` beyond the end means one validation, at the end (announced); a ``val_begin`` beyond
the end means none, and is refused. Checkpoints: a checkpoint hook counting epochs under an iteration
loop would save nothing before the end (refused); a run that saves none at all (``save_last=False``
and an interval beyond the end: benchmarks do it) is announced. A scheduler that begins after the end
never acts, one that ends after it is cut short: both announced (a short smoke run of a long config
does both)."""
import difflib
import math

from .checks import registry
from .loading import ConfigError
from .rewrites import announce

SCHEDULER_END = int(1e9)  # mmengine's INF: the ``end`` of a scheduler that names none


def is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def refuse(path: str, value, expected: str, why: str = ''):
    raise ConfigError(f'{path}={value!r}: expected {expected}' + (f' ({why})' if why else ''))


def _interval(lo, hi, lo_open, hi_open) -> str:
    if hi is None:
        return f'> {lo}' if lo_open else f'>= {lo}'
    return f'in {"(" if lo_open else "["}{lo}, {hi}{")" if hi_open else "]"}'


def need_int(node, key: str, path: str, lo=None, hi=None, others=(), integral_float=False, why: str = ''):
    """``node[key]``, when present: an integer within ``[lo, hi]`` or one of ``others`` (an integral
    float too with ``integral_float``, as mmengine's loops accept ``max_iters=1e4``)."""
    if not isinstance(node, dict) or key not in node:
        return None
    v = node[key]
    ok = is_int(v) or (integral_float and isinstance(v, float) and v.is_integer())
    if ok and any(v == o for o in others):
        return v
    if not ok or (lo is not None and v < lo) or (hi is not None and v > hi):
        rng = '' if lo is None and hi is None else ' ' + _interval(lo, hi, False, False)
        refuse(f'{path}.{key}', v, f'an integer{rng}' + ''.join(f', or {o}' for o in others), why)
    return int(v)


def need_number(node, key: str, path: str, lo=None, hi=None, lo_open=False, hi_open=False, why: str = ''):
    """``node[key]``, when present: a finite number within the bounds."""
    if not isinstance(node, dict) or key not in node:
        return None
    v = node[key]
    if not is_number(v) or (lo is not None and (v < lo or (lo_open and v == lo))) or \
            (hi is not None and (v > hi or (hi_open and v == hi))):
        rng = '' if lo is None and hi is None else ' ' + _interval(lo, hi, lo_open, hi_open)
        refuse(f'{path}.{key}', v, f'a number{rng}', why)
    return v


def need_bool(node, key: str, path: str):
    if isinstance(node, dict) and key in node and not isinstance(node[key], bool):
        refuse(f'{path}.{key}', node[key], 'True or False')


def registered(scope: str, registry_name: str, typ):
    if isinstance(typ, type):
        return typ
    try:
        return registry(scope, registry_name).get(typ) if isinstance(typ, str) else None
    except (KeyError, ImportError):
        return None


# ----------------------------------------------------------------------------- schedule
def train_loop(cfg, scope: str):
    """``(loop name, by_epoch, max)`` of ``train_cfg`` after its checks; ``(None, None, None)`` when the
    config does not train, ``by_epoch`` None for a loop of neither kind."""
    from mmengine.runner import EpochBasedTrainLoop, IterBasedTrainLoop
    tc = cfg.get('train_cfg')
    if tc is None:
        return None, None, None
    if not isinstance(tc, dict):
        refuse('train_cfg', tc, "a dict such as dict(type='IterBasedTrainLoop', max_iters=N)")
    if 'type' in tc and 'by_epoch' in tc:
        raise ConfigError(f"train_cfg: type={tc['type']!r} and by_epoch={tc['by_epoch']!r}: give one of them "
                          '(mmengine refuses both)')
    if 'type' in tc:
        cls = registered(scope, 'LOOPS', tc['type'])
        name = getattr(cls, '__name__', str(tc['type']))
        by_epoch = True if cls and issubclass(cls, EpochBasedTrainLoop) else \
            False if cls and issubclass(cls, IterBasedTrainLoop) else None
    elif 'by_epoch' in tc:
        need_bool(tc, 'by_epoch', 'train_cfg')
        by_epoch = tc['by_epoch']
        name = 'EpochBasedTrainLoop' if by_epoch else 'IterBasedTrainLoop'
    else:
        raise ConfigError("train_cfg: neither type (e.g. 'IterBasedTrainLoop') nor by_epoch is set: mmengine "
                          'cannot choose the training loop')
    if by_epoch is None:
        return name, None, None
    key = 'max_epochs' if by_epoch else 'max_iters'
    if key not in tc:
        raise ConfigError(f'train_cfg.{key} is not set: how long to train ({name} needs it)')
    n = need_int(tc, key, 'train_cfg', lo=1, integral_float=True, why='a run that trains nothing is not a success')
    return name, by_epoch, n


def check_schedule(cfg, scope: str = 'mmseg'):
    """The training loop, validation, checkpoint and logger intervals, and each parameter scheduler."""
    loop, by_epoch, n = train_loop(cfg, scope)
    if loop is None:
        return
    tc = cfg.train_cfg
    unit, key = ('epoch', 'max_epochs') if by_epoch else ('iteration', 'max_iters')
    val_interval = need_int(tc, 'val_interval', 'train_cfg', lo=1)
    val_begin = need_int(tc, 'val_begin', 'train_cfg')
    validates = all(cfg.get(k) is not None for k in ('val_cfg', 'val_dataloader', 'val_evaluator'))
    if n is not None and validates:
        if val_begin is not None and val_begin > n:
            raise ConfigError(f'train_cfg.val_begin={val_begin} > {key}={n}: validation would never run; lower it, '
                              'or set val_cfg, val_dataloader and val_evaluator to None to train without validation')
        if val_interval is not None and val_interval > n:
            announce(f'train_cfg.val_interval={val_interval} > {key}={n}: validation runs once, after the last {unit}')
    check_hooks(cfg, scope, loop, by_epoch, n)
    check_schedulers(cfg, loop, by_epoch, n)


def check_hooks(cfg, scope: str, loop: str, by_epoch, n):
    from mmengine.hooks import CheckpointHook, LoggerHook
    hooks = cfg.get('default_hooks') or {}
    ck = hooks.get('checkpoint')
    cls = registered(scope, 'HOOKS', ck.get('type')) if isinstance(ck, dict) else None
    if cls is not None and issubclass(cls, CheckpointHook):
        path = 'default_hooks.checkpoint'
        interval = need_int(ck, 'interval', path, lo=1, others=(-1,))
        interval = -1 if interval is None else interval
        save_begin = need_int(ck, 'save_begin', path, lo=0) or 0
        need_int(ck, 'max_keep_ckpts', path)
        need_bool(ck, 'save_last', path)
        need_bool(ck, 'by_epoch', path)
        ck_by_epoch = ck.get('by_epoch', True)
        if by_epoch is False and ck_by_epoch:
            raise ConfigError(f'{path}.by_epoch=True (CheckpointHook\'s default) under {loop}: its interval would '
                              'count epochs, and an iteration loop has one epoch, so nothing would be saved before '
                              'the end; set by_epoch=False (the interval counts iterations)')
        if n is not None and ck_by_epoch == by_epoch and not ck.get('save_last', True) and \
                (interval < 1 or interval > n or save_begin >= n):
            announce(f'{path}: interval={interval}, save_begin={save_begin}, save_last=False with '
                 f'{"max_epochs" if by_epoch else "max_iters"}={n}: this run saves no checkpoint', warn=True)
    lg = hooks.get('logger')
    cls = registered(scope, 'HOOKS', lg.get('type')) if isinstance(lg, dict) else None
    if cls is not None and issubclass(cls, LoggerHook):
        need_int(lg, 'interval', 'default_hooks.logger', lo=1)


def check_schedulers(cfg, loop: str, by_epoch, n):
    scheds = cfg.get('param_scheduler')
    if isinstance(scheds, dict) and 'type' not in scheds:  # one list per optimizer (several optimizers)
        return
    for i, s in enumerate(scheds if isinstance(scheds, (list, tuple)) else [scheds] if scheds else []):
        if not isinstance(s, dict):
            continue
        path = f'param_scheduler[{i}]'
        name = f'{path} ({s.get("type")})'
        begin = need_int(s, 'begin', path, lo=0)
        end = need_int(s, 'end', path, lo=1)
        begin = 0 if begin is None else begin
        end = SCHEDULER_END if end is None else end
        if begin >= end:
            raise ConfigError(f'{name}: begin={begin} >= end={end}: the schedule ends before it begins (it would '
                              'never act)')
        need_bool(s, 'by_epoch', path)
        need_bool(s, 'convert_to_iter_based', path)
        s_by_epoch = s.get('by_epoch', True)
        if str(s.get('type', '')).startswith('Linear'):
            for k in ('start_factor', 'end_factor'):
                need_number(s, k, path, 0, 1)
        if by_epoch is False and s_by_epoch and not s.get('convert_to_iter_based', False):
            raise ConfigError(f"{name}: by_epoch=True (mmengine's default) under {loop}: it steps once per epoch, "
                              'and an iteration loop ends its only epoch after the last iteration, so the value '
                              'would never change; set by_epoch=False (begin and end in iterations)')
        if n is None or s_by_epoch != by_epoch:
            continue
        unit = 'epoch' if by_epoch else 'iteration'
        if begin >= n:
            announce(f'{name} begins at {unit} {begin}, after the last one ({n}): it never acts', warn=True)
        elif end != SCHEDULER_END and end > n:
            announce(f'{name} ends at {unit} {end}, after the last one ({n}): training stops part-way through it',
                 warn=True)


# ----------------------------------------------------------------------------- optimizer
AMP_DTYPES = ('float16', 'bfloat16', 'float32', 'float64')  # AmpOptimWrapper.valid_dtypes


def check_optimizer(cfg):
    """The optim wrapper (accumulation, clipping, AMP dtype) and its optimizer's hyper-parameters."""
    ow = cfg.get('optim_wrapper')
    if not isinstance(ow, dict):
        return
    need_int(ow, 'accumulative_counts', 'optim_wrapper', lo=1)
    cg = ow.get('clip_grad')
    if cg is not None and not isinstance(cg, dict):
        refuse('optim_wrapper.clip_grad', cg, 'None or dict(max_norm=...)')
    need_number(cg, 'max_norm', 'optim_wrapper.clip_grad', lo=0, lo_open=True,
                why='0 would clip every gradient to nothing')
    dtype = ow.get('dtype')
    if isinstance(dtype, str) and dtype not in AMP_DTYPES:  # mmengine's AmpOptimWrapper asserts it mid-build
        refuse('optim_wrapper.dtype', dtype, f'one of {AMP_DTYPES}')
    opt = ow.get('optimizer')
    if not isinstance(opt, dict):
        return
    p = 'optim_wrapper.optimizer'
    need_number(opt, 'lr', p, lo=0, lo_open=True, why='an lr of 0 trains nothing')
    need_number(opt, 'weight_decay', p, lo=0)
    need_number(opt, 'momentum', p, lo=0, hi=1, hi_open=True)
    need_number(opt, 'dampening', p, lo=0, hi=1)
    need_number(opt, 'eps', p, lo=0)
    if 'betas' in opt:
        b = opt['betas']
        if not (isinstance(b, (list, tuple)) and len(b) == 2 and all(is_number(x) and 0 <= x < 1 for x in b)):
            refuse(f'{p}.betas', b, 'two numbers in [0, 1), e.g. (0.9, 0.999)')
    need_bool(opt, 'nesterov', p)
    if opt.get('nesterov') and (not opt.get('momentum') or opt.get('dampening', 0)):
        raise ConfigError(f'{p}.nesterov=True needs momentum > 0 and dampening 0 (momentum={opt.get("momentum", 0)!r}, '
                          f'dampening={opt.get("dampening", 0)!r})')


# ----------------------------------------------------------------------------- randomness, data loaders
RANDOMNESS_KEYS = ('seed', 'deterministic', 'diff_rank_seed')


def check_randomness(cfg):
    r = cfg.get('randomness')
    if r is None:
        return
    if not isinstance(r, dict):
        refuse('randomness', r, 'dict(seed=None or an int, deterministic=False)')
    for k in r:
        if k not in RANDOMNESS_KEYS:
            near = difflib.get_close_matches(k, RANDOMNESS_KEYS, 1)
            raise ConfigError(f'randomness.{k}: not a randomness setting' +
                              (f' (did you mean {near[0]!r}?)' if near else f'; they are {RANDOMNESS_KEYS}'))
    if 'seed' not in r:
        raise ConfigError('randomness.seed is not set: None (a random seed, logged) or an int')
    if r['seed'] is not None:
        need_int(r, 'seed', 'randomness', lo=0, hi=2 ** 32 - 1, others=(None,))
    need_bool(r, 'deterministic', 'randomness')
    need_bool(r, 'diff_rank_seed', 'randomness')


LOADERS = ('train_dataloader', 'val_dataloader', 'test_dataloader')


def check_dataloaders(cfg):
    for name in LOADERS:
        dl = cfg.get(name)
        if dl is None:
            continue
        if not isinstance(dl, dict):
            refuse(name, dl, 'a dict (batch_size, num_workers, sampler, dataset)')
        need_int(dl, 'batch_size', name, lo=1)
        need_int(dl, 'num_workers', name, lo=0)
        need_bool(dl, 'persistent_workers', name)
        if dl.get('persistent_workers') and not dl.get('num_workers', 0):
            raise ConfigError(f'{name}.persistent_workers=True needs num_workers >= 1 (num_workers='
                              f'{dl.get("num_workers", 0)!r}): set persistent_workers=False to load in the main '
                              'process')


def check_values(cfg, scope: str = 'mmseg'):
    """All of the above, in the order a reader meets them."""
    check_schedule(cfg, scope)
    check_optimizer(cfg)
    check_randomness(cfg)
    check_dataloaders(cfg)
    from .classes import check_class_counts
    check_class_counts(cfg, scope)
