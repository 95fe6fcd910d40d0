"""Issue 27 (3, 6, 8): ``--cfg-options`` keeps what was typed; every config value is checked before anything
is written; what this machine lacks is refused in one line like bad input."""
import importlib.util
from pathlib import Path

import pytest
import torch

from conftest import load_tool, run_tool

ROOT = Path(__file__).resolve().parents[1]
DEMO_LINEAR = str(ROOT / 'mmcfg/demo/linear_internvit-tiny_1xb8-1k_demo-shapes-112x112.py')
DEMO_UPERNET = str(ROOT / 'mmcfg/demo/upernet_internvit-tiny_1xb8-1k_demo-shapes-112x112.py')
DEMO_CLS = str(ROOT / 'mmcfg/classification/internvit-tiny_linear-probe_1xb64-10e_demo-shapes-cls-112px.py')
IMAGENET = str(ROOT / 'mmcfg/classification/internvit-6b_linear-probe_8xb128-10e_in1k-224px.py')
DEEPSPEED = str(ROOT / 'mmcfg/scale/upernet_internvit-6b_deepspeed-zero2-8xb2-80k_ade20k-504x504.py')
SPACED = '/data/ade x'  # mmengine's DictAction made it /data/adex: another dataset, trained on without a word


# ----------------------------------------------------------------------------- 3. --cfg-options
@pytest.mark.parametrize('text, want', [
    (SPACED, SPACED),
    ('  padded ', '  padded '),                  # a word is kept verbatim
    ('floor tile', 'floor tile'),
    ("it's", "it's"),
    ('path/with[1]/x', 'path/with[1]/x'),
    ('', ''),
    ('"a b"', 'a b'), ("'a,b'", 'a,b'), ('"1"', '1'), ('"None"', 'None'),  # quotes: one string, verbatim
    ('1', 1), ('1e-4', 1e-4), ('-3', -3), ('True', True), ('false', False), ('None', None),  # as mmengine
    ('[1,2]', [1, 2]), ('(1,2)', (1, 2)), ('(1,)', (1,)), ('[]', []), ('[1, 2,]', [1, 2]),
    ('[(1, 2), [a, b], c]', [(1, 2), ['a', 'b'], 'c']),
    ('[wall, floor tile]', ['wall', 'floor tile']), ('["a,b", c]', ['a,b', 'c']),
    ('5,11,17', [5, 11, 17]), ('1,', [1]), ('(1,2),(3,4)', [(1, 2), (3, 4)]), ('"a","b"', ['a', 'b']),
])
def test_option_values_keep_what_was_typed(text, want):
    from perception.config import parse_option_value
    got = parse_option_value(text)
    assert got == want and type(got) is type(want)


@pytest.mark.parametrize('text, want', [
    ('/data/a,b', "could be a list or one string with commas: write data_root=[/data/a,b] for a list, or "
                  "data_root='\"/data/a,b\"'"),
    ('wall,floor', 'could be a list or one string'),
    ('[1,2', 'the [ at character 1 is not closed'),
    ('"abc', 'the quote " at character 1 is not closed'),
    ('[1,,2]', 'an empty element at character 4'),
    ('512 512', 'list elements are separated by commas ([512, 512])'),
    ('"a" b', "unexpected 'b'"),
])
def test_option_values_that_cannot_be_kept_are_refused_in_one_line(text, want, capsys):
    train = load_tool(ROOT / 'tools/train.py')
    with pytest.raises(SystemExit) as e:
        train.parse_args(['c.py', '--cfg-options', f'data_root={text}'])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert want in err[-1] and ': error: --cfg-options' in err[-1], err


def _captured(monkeypatch, module, name):
    """Replace ``module.name`` by a function that records its arguments and stops the tool."""
    seen = {}

    class Stop(Exception):
        pass

    def fake(*args, **kwargs):
        seen.update(kwargs, args=args)
        raise Stop
    monkeypatch.setattr(module, name, fake)
    return seen, Stop


def _spaced_options(tool, monkeypatch, tmp_path):
    """The ``cfg_options`` each tool hands on for ``--cfg-options "...data_root=/data/ade x"``."""
    opt = ['--cfg-options', f'train_dataloader.dataset.data_root={SPACED}']
    mod = load_tool(ROOT / 'tools' / f'{tool}.py')
    if tool == 'train':
        return mod.parse_args([DEMO_LINEAR, *opt]).cfg_options
    if tool == 'test':
        seen, stop = _captured(monkeypatch, mod, 'evaluate')
        argv = [DEMO_LINEAR, 'x.pth', *opt]
    elif tool == 'infer':
        import cv2
        import numpy as np

        import perception.inference
        cv2.imwrite(str(tmp_path / 'a.jpg'), np.zeros((8, 8, 3), np.uint8))
        seen, stop = _captured(monkeypatch, perception.inference, 'init_segmentor')
        argv = [DEMO_LINEAR, '--random-init', str(tmp_path / 'a.jpg'), '--out', str(tmp_path / 'o'), *opt]
    elif tool == 'export':
        import perception.export
        seen, stop = _captured(monkeypatch, perception.export, 'export_segmentor')
        argv = [DEMO_LINEAR, 'none', '--out', str(tmp_path / 'b'), *opt]
    else:  # linear_probe merges the options into the config itself, then runs the probe
        import perception.classification.fast_probe as fp
        seen, stop = _captured(monkeypatch, fp, 'run_linear_probe')
        argv = [DEMO_CLS, '--work-dir', str(tmp_path / 'w'), *opt]
    with pytest.raises(stop):
        mod.main(argv)
    if tool == 'linear_probe':
        return {'train_dataloader.dataset.data_root': seen['args'][0].train_dataloader.dataset.data_root}
    return seen['args'][3] if tool == 'infer' else seen['cfg_options']


@pytest.mark.parametrize('tool', ['train', 'test', 'infer', 'export', 'linear_probe'])
def test_a_path_with_a_space_reaches_every_tool_unchanged(tool, monkeypatch, tmp_path):
    assert _spaced_options(tool, monkeypatch, tmp_path)['train_dataloader.dataset.data_root'] == SPACED


def test_a_path_with_a_space_reaches_the_prepared_config(tmp_path):
    from perception.config import prepare_config
    train = load_tool(ROOT / 'tools/train.py')
    args = train.parse_args([DEMO_LINEAR, '--cfg-options', f'train_dataloader.dataset.data_root={SPACED}',
                             f'load_from={SPACED}/iter 10.pth', "model.backbone.out_indices=[5]"])
    cfg = prepare_config(DEMO_LINEAR, str(tmp_path / 'w'), cfg_options=args.cfg_options)
    assert cfg.train_dataloader.dataset.data_root == SPACED and cfg.load_from == f'{SPACED}/iter 10.pth'
    assert list(cfg.model.backbone.out_indices) == [5]


# ----------------------------------------------------------------------------- 6. values
BAD_VALUES = [
    ({'train_cfg.max_iters': 0}, 'train_cfg.max_iters=0: expected an integer >= 1 (a run that trains nothing'),
    ({'train_cfg.max_iters': '1000'}, "train_cfg.max_iters='1000': expected an integer >= 1"),
    ({'train_cfg.max_iters': 2.5}, 'train_cfg.max_iters=2.5: expected an integer >= 1'),
    ({'train_cfg.val_interval': 0}, 'train_cfg.val_interval=0: expected an integer >= 1'),
    ({'train_cfg.val_begin': 5000}, 'train_cfg.val_begin=5000 > max_iters=1000: validation would never run'),
    ({'train_cfg.by_epoch': False}, "train_cfg: type='IterBasedTrainLoop' and by_epoch=False: give one of them"),
    ({'default_hooks.checkpoint.interval': 0}, 'default_hooks.checkpoint.interval=0: expected an integer >= 1, or -1'),
    ({'default_hooks.checkpoint.by_epoch': True}, 'default_hooks.checkpoint.by_epoch=True'),
    ({'default_hooks.logger.interval': 0.5}, 'default_hooks.logger.interval=0.5: expected an integer >= 1'),
    ({'param_scheduler': [dict(type='LinearLR', by_epoch=False, begin=100, end=100)]},
     'param_scheduler[0] (LinearLR): begin=100 >= end=100: the schedule ends before it begins'),
    ({'param_scheduler': [dict(type='PolyLR', begin=0, end=1000)]},
     "param_scheduler[0] (PolyLR): by_epoch=True (mmengine's default) under IterBasedTrainLoop"),
    ({'param_scheduler': [dict(type='LinearLR', start_factor=2.0, by_epoch=False, end=10)]},
     'param_scheduler[0].start_factor=2.0: expected a number in [0, 1]'),
    ({'optim_wrapper.optimizer.lr': 0}, 'optim_wrapper.optimizer.lr=0: expected a number > 0'),
    ({'optim_wrapper.optimizer.lr': '1e-3'}, "optim_wrapper.optimizer.lr='1e-3': expected a number > 0"),
    ({'optim_wrapper.optimizer.weight_decay': -0.1},
     'optim_wrapper.optimizer.weight_decay=-0.1: expected a number >= 0'),
    ({'optim_wrapper.optimizer.betas': (0.9, 1.0)},
     'optim_wrapper.optimizer.betas=(0.9, 1.0): expected two numbers in [0, 1)'),
    ({'optim_wrapper.optimizer.eps': -1e-8}, 'optim_wrapper.optimizer.eps=-1e-08: expected a number >= 0'),
    ({'optim_wrapper.accumulative_counts': 0}, 'optim_wrapper.accumulative_counts=0: expected an integer >= 1'),
    ({'optim_wrapper.clip_grad': dict(max_norm=0)}, 'optim_wrapper.clip_grad.max_norm=0: expected a number > 0'),
    ({'optim_wrapper.dtype': 'bf16'}, "optim_wrapper.dtype='bf16': expected one of ('float16', 'bfloat16',"),
    ({'randomness.seed': 'abc'}, "randomness.seed='abc': expected an integer in [0, 4294967295], or None"),
    ({'randomness.seed': -1}, 'randomness.seed=-1'),
    ({'randomness.deterministic': 'yes'}, "randomness.deterministic='yes': expected True or False"),
    ({'randomness.sead': 1}, "randomness.sead: not a randomness setting (did you mean 'seed'?)"),
    ({'train_dataloader.batch_size': 0}, 'train_dataloader.batch_size=0: expected an integer >= 1'),
    ({'train_dataloader.batch_size': 2.0}, 'train_dataloader.batch_size=2.0: expected an integer >= 1'),
    ({'val_dataloader.num_workers': -1}, 'val_dataloader.num_workers=-1: expected an integer >= 0'),
    ({'train_dataloader.num_workers': 0}, 'train_dataloader.persistent_workers=True needs num_workers >= 1'),
    ({'model.decode_head.num_classes': 150}, 'model.decode_head.num_classes=150 but train_dataloader.dataset has 6 '
                                             'classes (DemoShapesDataset.METAINFO): set num_classes=6'),
    ({'model.decode_head.num_classes': 0}, 'model.decode_head.num_classes=0: expected an integer >= 1'),
    ({'test_dataloader.dataset.metainfo': dict(classes=('a', 'b'))},
     'model.decode_head.num_classes=6 but test_dataloader.dataset has 2 classes '
     '(test_dataloader.dataset.metainfo.classes)'),
    ({'train_dataloader.dataset.pipeline.2.num_classes': 150},
     'train_dataloader.dataset.pipeline[2].num_classes=150: expected 6, as model.decode_head.num_classes'),
]


@pytest.mark.parametrize('opts, want', BAD_VALUES, ids=[str(o)[:60] for o, _ in BAD_VALUES])
def test_bad_values_are_refused_before_anything_is_written(opts, want, tmp_path):
    from perception.config import ConfigError, prepare_config
    with pytest.raises(ConfigError) as e:
        prepare_config(DEMO_LINEAR, str(tmp_path / 'w'), cfg_options=opts)
    assert want in str(e.value) and '\n' not in str(e.value)
    assert not (tmp_path / 'w').exists()


@pytest.mark.parametrize('config, opts, want', [
    (DEMO_UPERNET, {'model.auxiliary_head.num_classes': 5}, 'model.auxiliary_head.num_classes=5: expected 6, as '
                                                            'model.decode_head.num_classes'),
    (DEMO_CLS, {'optim_wrapper.optimizer.momentum': 1.0}, 'optim_wrapper.optimizer.momentum=1.0: expected a number '
                                                          'in [0, 1)'),
    (DEMO_CLS, {'optim_wrapper.optimizer.momentum': 0.0}, 'optim_wrapper.optimizer.nesterov=True needs momentum > 0'),
    (DEMO_CLS, {'data_preprocessor.num_classes': 5}, 'data_preprocessor.num_classes=5: expected 6, as model.head'),
    (DEMO_CLS, {'train_cfg.max_epochs': 0}, 'train_cfg.max_epochs=0: expected an integer >= 1'),
    (IMAGENET, {'model.head.num_classes': 10, 'data_preprocessor.num_classes': 10},
     'model.head.num_classes=10 but train_dataloader.dataset has 1000 classes (ImageNet.METAINFO)'),
])
def test_other_configs_and_heads(config, opts, want, tmp_path):
    from perception.config import ConfigError, prepare_config
    with pytest.raises(ConfigError) as e:
        prepare_config(config, str(tmp_path / 'w'), cfg_options=opts)
    assert want in str(e.value)


def test_what_is_merely_surprising_is_announced(monkeypatch, tmp_path):
    """val_interval beyond the end: mmengine validates after the last iteration anyway (once, announced);
    a scheduler beyond the end never acts (announced); a head of the right count passes."""
    import perception.config.values as V
    from perception.config import prepare_config
    said = []
    monkeypatch.setattr(V, 'announce', lambda msg, warn=False: said.append(msg))
    cfg = prepare_config(DEMO_LINEAR, str(tmp_path / 'w'), cfg_options={'train_cfg.max_iters': 50})
    assert cfg.train_cfg.max_iters == 50
    assert 'train_cfg.val_interval=500 > max_iters=50: validation runs once, after the last iteration' in said
    assert any('param_scheduler[1] (PolyLR) begins at iteration 100, after the last one (50): it never acts' in s
               for s in said)
    assert any(s.startswith('default_hooks.checkpoint') for s in said) is False  # save_last: one at the end
    said.clear()
    prepare_config(DEMO_LINEAR, str(tmp_path / 'w'), cfg_options={'default_hooks.checkpoint.save_last': False,
                                                                   'train_cfg.max_iters': 50})
    assert any('this run saves no checkpoint' in s for s in said)
    classes = ('a', 'b', 'c')
    opts = {f'{s}_dataloader.dataset.metainfo': dict(classes=classes) for s in ('train', 'val', 'test')}
    opts.update({'model.decode_head.num_classes': 3, 'train_dataloader.dataset.pipeline.2.num_classes': 3,
                 'val_dataloader.dataset.pipeline.3.num_classes': 3,
                 'test_dataloader.dataset.pipeline.3.num_classes': 3})  # the CheckSegMap steps
    assert prepare_config(DEMO_LINEAR, str(tmp_path / 'w'), cfg_options=opts).model.decode_head.num_classes == 3
    assert not (tmp_path / 'w').exists()


def test_every_shipped_config_passes_the_value_checks():
    from mmengine.config import Config

    from perception.config import check_values
    from perception.setup_env import register_all_modules
    register_all_modules()
    leaves = [p for p in sorted((ROOT / 'mmcfg').rglob('*.py')) if '_base_' not in p.parts]
    assert len(leaves) > 40
    for p in leaves:
        cfg = Config.fromfile(str(p))
        check_values(cfg, cfg.get('default_scope') or 'mmseg')


def test_the_train_tool_refuses_a_bad_value_in_one_line_and_writes_nothing(tmp_path, capsys):
    wd = tmp_path / 'w'
    status, err = run_tool(capsys, 'train', DEMO_LINEAR, '--work-dir', wd, '--cfg-options', 'train_cfg.max_iters=0')
    assert status == 2 and err.strip().splitlines()[-1].startswith('error: train_cfg.max_iters=0: expected')
    assert 'Traceback' not in err and not wd.exists()
    status, err = run_tool(capsys, 'test', DEMO_LINEAR, '--random-init', '--work-dir', wd,
                           '--cfg-options', 'test_dataloader.batch_size=0')
    assert status == 2 and 'test_dataloader.batch_size=0: expected an integer >= 1' in err and not wd.exists()


# ----------------------------------------------------------------------------- check_weights_fit
def _save(path, sd):
    torch.save({'meta': {'iter': 1}, 'state_dict': sd}, path)
    return str(path)


def test_weights_that_do_not_fit_the_model_are_refused(tmp_path):
    from perception.checkpoint import CheckpointError
    from perception.config import check_weights_fit, load_config, model_shapes
    cfg = load_config(DEMO_UPERNET)
    shapes = model_shapes(cfg)
    assert shapes['decode_head.conv_seg.weight'][0] == 6
    heads = {k: torch.zeros(s) for k, s in shapes.items() if k.startswith(('decode_head.', 'auxiliary_head.'))}
    check_weights_fit(cfg, _save(tmp_path / 'fits.pth', heads))  # the heads alone fit: a partial load
    other = dict(heads, **{'decode_head.conv_seg.weight': torch.zeros(150, *shapes['decode_head.conv_seg.weight'][1:]),
                           'decode_head.conv_seg.bias': torch.zeros(150)})
    with pytest.raises(CheckpointError) as e:
        check_weights_fit(cfg, _save(tmp_path / 'ade.pth', other))
    assert ('decode_head.conv_seg.weight is [150, 64, 1, 1] in the file but [6, 64, 1, 1] in the model '
            '(model.decode_head.num_classes=6; the checkpoint was trained for 150 classes)') in str(e.value)
    grid = dict(heads, **{'backbone.pos_embed': torch.zeros(1, 17, shapes['backbone.pos_embed'][-1])})
    with pytest.raises(CheckpointError, match=r'backbone.pos_embed is \[1, 17, 128\] in the file but \[1, 65, 128\]'):
        check_weights_fit(cfg, _save(tmp_path / 'grid.pth', grid))  # mmengine's load_from would skip it
    check_weights_fit(cfg, str(tmp_path / 'grid.pth'), resampled=('backbone.pos_embed',))  # evaluation resamples
    with pytest.raises(CheckpointError, match='holds none of the tensors of the model'):
        check_weights_fit(cfg, _save(tmp_path / 'vit.pth', {'blocks.0.attn.qkv.weight': torch.zeros(2, 2)}))


def test_a_misfit_load_from_is_refused_before_the_work_dir_exists(tmp_path):
    """How ``apis.train`` uses it: after ``prepare_config``, before the Runner (which makes the work dir)."""
    from perception.checkpoint import CheckpointError
    from perception.config import check_weights_fit, prepare_config
    f = _save(tmp_path / 'ade.pth', {'decode_head.conv_seg.weight': torch.zeros(150, 128, 1, 1)})
    cfg = prepare_config(DEMO_LINEAR, str(tmp_path / 'w'), cfg_options={'load_from': f})
    with pytest.raises(CheckpointError, match=r'decode_head.conv_seg.weight is \[150, 128, 1, 1\] in the file'):
        check_weights_fit(cfg, cfg.load_from)
    assert not (tmp_path / 'w').exists()


# ----------------------------------------------------------------------------- 8. what the machine lacks
class FakeXformers:
    @staticmethod
    def memory_efficient_attention(q, k, v, scale=None):
        raise NotImplementedError('No operator found')


@pytest.fixture
def no_xformers(monkeypatch):
    from perception.layers import attention as A
    monkeypatch.delenv('PERCEPTION_ATTN', raising=False)
    monkeypatch.setattr(A, '_xformers_ops', lambda: None)


@pytest.fixture
def cpu_only_xformers(monkeypatch):
    from perception.layers import attention as A
    monkeypatch.delenv('PERCEPTION_ATTN', raising=False)
    monkeypatch.setattr(A, '_xformers_ops', lambda: FakeXformers)


@pytest.fixture
def no_compiler(monkeypatch):
    monkeypatch.setenv('CXX', '/nonexistent/g++')


@pytest.fixture
def no_deepspeed(monkeypatch):
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, 'find_spec',
                        lambda name, *a: None if name == 'deepspeed' else find_spec(name, *a))


@pytest.mark.parametrize('lack, argv, want', [
    ('no_xformers', ['--cfg-options', 'model.backbone.attn_backend=xformers'],
     "error: model.backbone.attn_backend='xformers': xformers is not importable here: pip install "
     "'perception[xformers]'"),
    ('cpu_only_xformers', ['--cfg-options', 'model.backbone.attn_backend=xformers'],
     "xformers has no cpu kernels and this run has no CUDA device; use 'sdpa' or 'auto'"),
    ('no_compiler', ['--compile', 'force'],
     "error: model.backbone.compile_blocks='force' (--compile force): torch.compile on CPU needs a C++ compiler"),
    ('no_deepspeed', [], 'DeepSpeedStrategy needs the deepspeed package, which is not installed here'),
])
def test_what_this_machine_lacks_is_one_line_from_train(lack, argv, want, request, tmp_path, capsys, monkeypatch):
    from perception.common.errors import UnavailableError
    request.getfixturevalue(lack)
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)  # the same refusals on a GPU machine
    config = DEEPSPEED if lack == 'no_deepspeed' else DEMO_LINEAR
    wd = tmp_path / 'w'
    status, err = run_tool(capsys, 'train', config, '--work-dir', wd, *argv)
    assert status == 2 and want in err.strip().splitlines()[-1] and 'Traceback' not in err, err[-2000:]
    assert not wd.exists()
    monkeypatch.setenv('PERCEPTION_DEBUG', '1')
    with pytest.raises(UnavailableError):
        run_tool(capsys, 'train', config, '--work-dir', wd, *argv)


def test_a_kernel_missing_at_the_first_forward_is_one_line_from_infer(cpu_only_xformers, tmp_path, capsys,
                                                                       monkeypatch):
    """xformers importable but the run on a CPU: the config check (device not known when the model is built)
    passes; the backbone's forward refuses, and the tool reports it in one line."""
    import cv2
    import numpy as np

    from perception.common.errors import UnavailableError
    cv2.imwrite(str(tmp_path / 'a.jpg'), np.zeros((112, 112, 3), np.uint8))
    argv = [DEMO_LINEAR, '--random-init', tmp_path / 'a.jpg', '--out', tmp_path / 'o',
            '--cfg-options', 'model.backbone.attn_backend=xformers']
    status, err = run_tool(capsys, 'infer', *argv)
    assert status == 2 and 'Traceback' not in err, err[-2000:]
    last = err.strip().splitlines()[-1]
    assert "error: attn_backend='xformers' needs CUDA tensors (xformers has no cpu kernels)" in last
    monkeypatch.setenv('PERCEPTION_DEBUG', '1')
    with pytest.raises(UnavailableError):
        run_tool(capsys, 'infer', *argv)


def test_the_backbone_reports_a_missing_kernel_or_compiler_as_unavailable(tiny_arch, no_xformers, no_compiler):
    from perception import InternViT
    from perception.common.errors import InputError, UnavailableError
    from perception.layers.attention import BackendUnavailableError
    x = torch.randn(1, 3, 28, 28)
    for m in (InternViT(tiny_arch, attn_backend='xformers'), InternViT(tiny_arch, compile_blocks='force')):
        with pytest.raises(UnavailableError) as e:
            m(x)
        assert isinstance(e.value, InputError) and isinstance(e.value, RuntimeError)
        assert isinstance(e.value.__cause__, BackendUnavailableError)
    with pytest.raises(UnavailableError, match='xformers is not importable'):
        InternViT(tiny_arch, attn_backend='xformers').log_backend()


def test_a_model_built_outside_the_runner_is_checked_too(no_xformers):
    from perception.common.errors import UnavailableError
    from perception.config import ConfigError, build_model, load_config
    cfg = load_config(DEMO_LINEAR)
    cfg.model.backbone.attn_backend = 'xformers'
    with pytest.raises(UnavailableError, match='xformers is not importable'):
        build_model(cfg)
    build_model(cfg, device='meta')  # a structure for plans: nothing runs
    cfg.model.backbone.attn_backend = 'flash'
    with pytest.raises(ConfigError, match="model.backbone.attn_backend='flash': attn_backend must be one of"):
        build_model(cfg)


def test_a_launch_outside_torchrun_and_an_unknown_library_are_one_line(monkeypatch, tmp_path):
    from perception.common.errors import UnavailableError
    from perception.config import ConfigError, prepare_config
    from perception.config.environment import TORCHRUN_ENV
    for k in TORCHRUN_ENV:
        monkeypatch.delenv(k, raising=False)
    with pytest.raises(UnavailableError, match='--launcher pytorch but RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT not '
                                               'set: start it under torchrun'):
        prepare_config(DEMO_LINEAR, str(tmp_path / 'w'), launcher='pytorch')  # was KeyError: 'RANK' in init_dist
    with pytest.raises(ConfigError, match="default_scope='mmsegg': no OpenMMLab library of that name"):
        prepare_config(DEMO_LINEAR, str(tmp_path / 'w'), cfg_options={'default_scope': 'mmsegg'})
    assert not (tmp_path / 'w').exists()


def test_a_classifier_head_for_another_class_count_is_refused(tmp_path):
    """InternVL's ImageNet head (format D: ``norm.*``, ``head.*``) for 1000 classes against the 6-class demo
    classifier: named in the classifier's keys; a head of the right count passes."""
    from perception.checkpoint import CheckpointError
    from perception.config import check_weights_fit, load_config
    cfg = load_config(DEMO_CLS)
    d = {'norm.weight': torch.ones(256), 'norm.bias': torch.zeros(256), 'head.weight': torch.zeros(1000, 256),
         'head.bias': torch.zeros(1000)}
    torch.save(d, tmp_path / 'in1k.pth')
    with pytest.raises(CheckpointError, match=r'head.fc.weight is \[1000, 256\] in the file but \[6, 256\] in the '
                                              r'model \(model.head.num_classes=6; the checkpoint was trained for 1000'):
        check_weights_fit(cfg, tmp_path / 'in1k.pth')
    torch.save(dict(d, **{'head.weight': torch.zeros(6, 256), 'head.bias': torch.zeros(6)}), tmp_path / 'six.pth')
    check_weights_fit(cfg, tmp_path / 'six.pth')
