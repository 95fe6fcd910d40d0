"""Class counts checked before anything is built (``prepare_config``, through ``values.check_values``):
each head's ``num_classes`` against the classes of every loader's dataset (its ``metainfo`` override,
else its class's ``METAINFO``: ``DATASETS.get(type).METAINFO['classes']``), against the other heads,
the ``CheckSegMap`` steps of the pipelines, and mmpretrain's ``data_preprocessor.num_classes``. A head
for 150 classes on a 6-class dataset trains without a word in mmseg (the extra logits are never
targets) and scores the wrong classes; the other way round the loss fails mid-training.

mmseg counts a dataset's class list; ``reduce_zero_label`` does not change the count: the list already
leaves out the label 0 it ignores (ADE20K: 150 names, labels 1..150 read as 0..149). A list that starts
with 'background' under ``reduce_zero_label=True`` is announced: its names would shift by one."""
from mmengine.logging import print_log

from .loading import ConfigError
from .values import LOADERS, need_int, refuse, registered


def datasets_of(node, path: str):
    """The leaf dataset dicts under a loader's ``dataset`` (wrappers such as ``RepeatDataset`` and
    ``ConcatDataset`` opened), with their paths."""
    if not isinstance(node, dict):
        return []
    inner = []
    if isinstance(node.get('dataset'), dict):
        inner += datasets_of(node['dataset'], f'{path}.dataset')
    for i, d in enumerate(node.get('datasets') or () if isinstance(node.get('datasets'), (list, tuple)) else ()):
        inner += datasets_of(d, f'{path}.datasets[{i}]')
    return inner or [(path, node)]


def dataset_classes(ds: dict, path: str, scope: str):
    """``(class names, where they come from)`` of a dataset dict, or ``(None, None)`` when the config
    does not say (e.g. an image folder whose classes are its sub-folders)."""
    meta = ds.get('metainfo')
    if isinstance(meta, dict) and isinstance(meta.get('classes'), (list, tuple)):
        return meta['classes'], f'{path}.metainfo.classes'
    if scope == 'mmpretrain' and isinstance(ds.get('classes'), (list, tuple)):
        return ds['classes'], f'{path}.classes'
    cls = registered(scope, 'DATASETS', ds.get('type'))
    classes = (getattr(cls, 'METAINFO', None) or {}).get('classes') if cls is not None else None
    if isinstance(classes, (list, tuple)) and classes:
        return classes, f'{cls.__name__}.METAINFO'
    return None, None


def heads_of(cfg, scope: str):
    """``[(path, head dict)]`` of the heads that take ``num_classes``."""
    model = cfg.get('model') or {}
    out = []
    for k in (('decode_head', 'auxiliary_head') if scope != 'mmpretrain' else ('head',)):
        node = model.get(k) if isinstance(model, dict) else None
        for i, h in enumerate(node if isinstance(node, (list, tuple)) else [node]):
            if isinstance(h, dict) and 'num_classes' in h:
                out.append((f'model.{k}' + (f'[{i}]' if isinstance(node, (list, tuple)) else ''), h))
    return out


def check_class_counts(cfg, scope: str = 'mmseg'):
    """Every head predicts the classes of every loader's dataset (the module docstring)."""
    heads = heads_of(cfg, scope)
    for path, h in heads:
        need_int(h, 'num_classes', path, lo=1)
    if not heads:
        return
    ref_path, ref = heads[0][0], heads[0][1]['num_classes']
    for path, h in heads[1:]:
        if h['num_classes'] != ref:
            refuse(f'{path}.num_classes', h['num_classes'], f'{ref}, as {ref_path}.num_classes')
    # a binary mmseg head (out_channels=1) predicts one channel for the dataset's 2 classes
    fits = {ref, 2} if ref == 1 and heads[0][1].get('out_channels') == 1 else {ref}
    for name in LOADERS:
        loader = cfg.get(name)
        for path, ds in datasets_of(loader.get('dataset') if isinstance(loader, dict) else None, f'{name}.dataset'):
            classes, where = dataset_classes(ds, path, scope)
            if classes is not None and len(classes) not in fits:
                raise ConfigError(f'{ref_path}.num_classes={ref} but {path} has {len(classes)} classes ({where}): '
                                  f'set num_classes={len(classes)}, or give the dataset metainfo=dict(classes=...) '
                                  'naming the classes the head predicts')
            if classes is not None and ds.get('reduce_zero_label') and str(classes[0]).lower() in \
                    ('background', 'unlabeled', 'unlabelled', 'void'):
                print_log(f'{path}: reduce_zero_label=True ignores label 0, yet the first class is {classes[0]!r}: '
                          'the class list should leave out what label 0 means, or the names shift by one',
                          logger='current', level=30)
            for j, step in enumerate(ds.get('pipeline') or []):
                if isinstance(step, dict) and step.get('type') == 'CheckSegMap' and \
                        step.get('num_classes', ref) != ref:
                    refuse(f'{path}.pipeline[{j}].num_classes', step['num_classes'],
                           f'{ref}, as {ref_path}.num_classes (labels outside the head\'s classes would pass the '
                           'check and fail the loss, or valid ones be refused)')
    if scope == 'mmpretrain':
        model = cfg.get('model') or {}
        dp = model.get('data_preprocessor') or cfg.get('data_preprocessor')
        where = 'model.data_preprocessor' if model.get('data_preprocessor') else 'data_preprocessor'
        if isinstance(dp, dict) and dp.get('num_classes') not in (None, ref):
            refuse(f'{where}.num_classes', dp['num_classes'], f'{ref}, as {ref_path}.num_classes (the one-hot '
                   'targets of Mixup / CutMix have that many classes)')
