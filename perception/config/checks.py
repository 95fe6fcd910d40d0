"""Config checks before anything is built: every key of the model, its components, the loops, hooks,
optimizer and schedulers is an argument of the class it builds, or the check names its path and the
closest known argument (a misspelt key would otherwise be a TypeError deep inside mmengine's build, or
be swallowed by ``**kwargs``); and ``check_weights_fit``: a weights file to resume, load or evaluate
fits the config's model. The values themselves are checked in ``values``, what the config asks of the
machine in ``environment``."""
from .loading import ConfigError

COMPONENTS = ('backbone', 'neck', 'decode_head', 'auxiliary_head', 'head', 'data_preprocessor')


def class_arguments(cls):
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


def check_keys(node: dict, path: str, cls, name: str, allowed=(), closed: bool = False):
    """``closed``: refuse unknown keys even where ``**kwargs`` would swallow them (CheckpointHook's
    go to a deprecated file-client argument: a misspelt ``interval`` would vanish there)."""
    import difflib
    known, complete = class_arguments(cls)
    for k in (node if complete or closed else ()):
        if k not in known and k not in ('type', '_scope_', '_delete_') + tuple(allowed):
            near = difflib.get_close_matches(k, known, 1)
            raise ConfigError(f'{path}.{k}: {name} has no argument {k!r}'
                              + (f' (did you mean {near[0]!r}?)' if near else f'; it takes {known}'))


def registry(scope: str, name: str):
    """The registry ``name`` of the OpenMMLab library ``scope`` (a config's ``default_scope``)."""
    import importlib
    try:
        module = importlib.import_module(f'{scope}.registry')
    except ModuleNotFoundError as e:
        if e.name not in (scope, f'{scope}.registry'):
            raise
        raise ConfigError(f"default_scope={scope!r}: no OpenMMLab library of that name is installed (expected "
                          "'mmseg' or 'mmpretrain')") from e
    return getattr(module, name)


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
        cls = registry(scope, 'MODELS').get(typ)
        check_keys(node, path, cls, typ)
        if getattr(cls, '__name__', None) == 'Mask2FormerHead':
            check_mask2former_keys(node, path, scope)
    if path == 'model':
        for k in COMPONENTS:
            if k in node:
                check_model_keys(node[k], f'{path}.{k}', scope)


#: the keys mmdet's Mask2FormerHead reads from its ``train_cfg`` (by ``get`` with defaults: any other key is
#: ignored, so a misspelt ``num_points`` would train with 12544 points)
MASK2FORMER_TRAIN_CFG = ('num_points', 'oversample_ratio', 'importance_sample_ratio', 'assigner', 'sampler')


def check_mask2former_keys(node: dict, path: str, scope: str = 'mmseg'):
    """mmseg's ``Mask2FormerHead`` builds its parts from nested dicts that :func:`check_model_keys` does not
    reach: the pixel decoder (through the registry), the transformer decoder (its keys are the arguments of
    mmdet's ``Mask2FormerTransformerDecoder``) and ``train_cfg``, read key by key. A misspelt key there is a
    TypeError deep in the build, or silently a default: checked here, path and closest name in one line."""
    import difflib
    tc = node.get('train_cfg')
    for k in (tc if isinstance(tc, dict) else ()):
        if k not in MASK2FORMER_TRAIN_CFG:
            near = difflib.get_close_matches(k, MASK2FORMER_TRAIN_CFG, 1)
            hint = f' (did you mean {near[0]!r}?)' if near else f'; it reads {list(MASK2FORMER_TRAIN_CFG)}'
            raise ConfigError(f'{path}.train_cfg.{k}: Mask2FormerHead reads no {k!r} from its train_cfg' + hint)
    pd = node.get('pixel_decoder')
    if isinstance(pd, dict) and isinstance(pd.get('type'), str):
        cls = registry(scope, 'MODELS').get(pd['type'])
        if cls is not None:
            check_keys(pd, f'{path}.pixel_decoder', cls, pd['type'])
    td = node.get('transformer_decoder')
    if isinstance(td, dict):
        from mmdet.models.layers import Mask2FormerTransformerDecoder
        check_keys(td, f'{path}.transformer_decoder', Mask2FormerTransformerDecoder, 'Mask2FormerTransformerDecoder')


def check_runner_keys(cfg, scope: str = 'mmseg'):
    """The rest of a config the way :func:`check_model_keys` checks the model: a top-level key one
    typo away from a Runner argument (``trian_cfg``), and the keys of the loops (``train_cfg`` ...),
    ``default_hooks``, ``custom_hooks``, ``optim_wrapper`` and its optimizer, and ``param_scheduler``
    entries, against the classes they build. Other top-level keys are the config's own variables."""
    import difflib
    from mmengine.runner import FlexibleRunner, Runner
    runner_args = sorted(set(class_arguments(Runner)[0]) | set(class_arguments(FlexibleRunner)[0]))
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
        cls = registry(scope, 'LOOPS').get(typ)
        if cls is not None:
            check_keys(node, key, cls, typ, allowed=('by_epoch', 'runner', 'dataloader', 'evaluator'))
    hooks = [(f'default_hooks.{k}', v) for k, v in (cfg.get('default_hooks') or {}).items()]
    hooks += [(f'custom_hooks[{i}]', v) for i, v in enumerate(cfg.get('custom_hooks') or [])]
    for path, node in hooks:
        if isinstance(node, dict) and isinstance(node.get('type'), str):
            cls = registry(scope, 'HOOKS').get(node['type'])
            if cls is not None:
                check_keys(node, path, cls, node['type'], allowed=('priority',),
                            closed=node['type'].split('.')[-1] in ('CheckpointHook', 'SafeCheckpointHook'))
    ow = cfg.get('optim_wrapper')
    if isinstance(ow, dict) and 'type' in ow and not isinstance(ow.get('optimizer'), type(None)):
        cls = registry(scope, 'OPTIM_WRAPPERS').get(ow.get('type', 'OptimWrapper'))
        if cls is not None:
            check_keys(ow, 'optim_wrapper', cls, ow.get('type', 'OptimWrapper'),
                        allowed=('constructor', 'paramwise_cfg'))
        opt = ow.get('optimizer')
        if isinstance(opt, dict) and isinstance(opt.get('type'), str):
            cls = registry(scope, 'OPTIMIZERS').get(opt['type'])
            if cls is not None:
                check_keys(opt, 'optim_wrapper.optimizer', cls, opt['type'], allowed=('params',))
    scheds = cfg.get('param_scheduler')
    for i, node in enumerate(scheds if isinstance(scheds, (list, tuple)) else [scheds] if scheds else []):
        if isinstance(node, dict) and isinstance(node.get('type'), str):
            cls = registry(scope, 'PARAM_SCHEDULERS').get(node['type'])
            if cls is not None:
                check_keys(node, f'param_scheduler[{i}]', cls, node['type'],
                            allowed=('convert_to_iter_based', 'optimizer', 'param_name'))


def check_weights_fit(cfg, path, resampled=()):
    """Refuse a weights file (``--resume PATH``, ``load_from``, a checkpoint to evaluate) that does not
    fit the config's model, before anything is built or written: mmengine's ``load_from`` / resume load
    non-strictly and skip a mis-shaped tensor with a warning (a decode head for another class count,
    a position embedding of another grid: training would go on from the initial weights), and the
    strict evaluation loaders fail only after the Runner made the work dir.

    The model is built on the ``meta`` device (no memory, nothing read); the file's tensors are read
    lazily (shapes only; pickles weights-only). Refused with a ``CheckpointError``: the first tensor of
    the model whose shape differs (both shapes named), or a file that holds none of the model's tensors.
    Tensors only one side has are left to the loaders (partial loads are how fine-tuning starts).
    ``resampled``: keys the caller's loader resamples to fit (the evaluation loaders resample
    ``backbone.pos_embed`` to the model's grid; mmengine's load_from does not). A sharded FSDP folder is
    checked as it loads, a URL (mmengine downloads it) is not checked. ``cfg``: a prepared config (or a
    path)."""
    import os.path as osp

    from ..checkpoint.errors import CheckpointError, list_keys
    from ..checkpoint.loader import open_checkpoint
    from ..checkpoint.sharded import is_sharded_checkpoint
    from .build import model_shapes
    from .loading import load_config, scope_of
    path = str(path)
    if '://' in path or (osp.isdir(path) and is_sharded_checkpoint(path)):
        return
    cfg = load_config(cfg)
    sd = {k[len('module.'):] if k.startswith('module.') else k: v for k, v in open_checkpoint(path).tensors.items()}
    if scope_of(cfg) == 'mmpretrain':
        if 'head.weight' in sd and any(k.startswith('norm.') for k in sd):  # InternVL's ImageNet head (format D)
            from ..classification.checkpoint import convert_imagenet_head
            sd = convert_imagenet_head(sd)
    else:  # InternVL's segmentors keep the pyramid in the backbone (format C)
        from ..segmentation.checkpoint import convert_segmentor_state
        sd = convert_segmentor_state(sd)
    shapes = model_shapes(cfg)
    if not set(sd) & set(shapes):
        raise CheckpointError(f'{path} holds none of the tensors of the model of {cfg.filename} (its keys: '
                              f'{list_keys(sd, 4)}; the model\'s: {list_keys(shapes, 4)}): nothing would load')
    for k, want in shapes.items():
        if k not in sd or k in resampled or tuple(sd[k].shape) == tuple(want):
            continue
        got = tuple(sd[k].shape)
        head = k.split('.')[0]
        n = ((cfg.get('model') or {}).get(head) or {}).get('num_classes') \
            if head in ('decode_head', 'auxiliary_head', 'head') else None
        hint = (f' (model.{head}.num_classes={n}; the checkpoint was trained for {got[0]} classes)'
                if isinstance(n, int) and got and want and want[0] == n and got[0] != n else '')
        raise CheckpointError(f'{path} does not fit the model of {cfg.filename}: {k} is {list(got)} in the file '
                              f'but {list(want)} in the model{hint}')
