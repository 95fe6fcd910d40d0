"""The ViT-Adapter configs (issue 28, item 2): every one prepared by the project's config checks and built (the
6B on the meta device), the published recipe's numbers, the one-GPU bf16 variant, the 448px / 300M variants, the
layer-decay ids the fork's constructor gives, a short training run of the demo config, and InternVL-MMDetSeg
segmentor checkpoints (mmcv 1.x file, DeepSpeed folder) evaluated by tools/test.py."""
import ast
import glob
import os
import os.path as osp
from collections import OrderedDict
from pathlib import Path

import pytest
import torch
from mmengine.config import Config

from conftest import load_tool, randomize_
from perception.checkpoint import CheckpointError
from perception.config import build_model, prepare_config
from perception.datasets.demo_data import make_demo_dataset

ROOT = Path(__file__).resolve().parents[1]
ADAPTER_CONFIGS = sorted(glob.glob(str(ROOT / 'mmcfg/internvit/upernet_internvit-adapter-*.py'))) + \
    sorted(glob.glob(str(ROOT / 'mmcfg/demo/upernet_internvit-adapter-*.py')))
DEMO = str(ROOT / 'mmcfg/demo/upernet_internvit-adapter-tiny_1xb8-1k_demo-shapes-128x128.py')
VIT = ('backbone.patch_embed.', 'backbone.pos_embed', 'backbone.blocks.')


def _cfg(name):
    return Config.fromfile(str(ROOT / 'mmcfg/internvit' / name))


def _sched(cfg):
    warm, poly = cfg.param_scheduler
    return warm['start_factor'], warm['end'], poly['begin'], poly['end']


# ----------------------------------------------------------------------------- every config
def test_the_adapter_configs_are_the_expected_set():
    names = sorted(osp.basename(p) for p in ADAPTER_CONFIGS)
    assert names == sorted(
        [f'upernet_internvit-adapter-{t}-frozen_{r}-80k_ade20k-512x512.py'
         for t in ('6b', '6b-448px-v1-5', '6b-448px-v2-5') for r in ('8xb2', '1xb2-accum8')]
        + ['upernet_internvit-adapter-300m_8xb2-80k_ade20k-512x512.py',
           'upernet_internvit-adapter-tiny_1xb8-1k_demo-shapes-128x128.py'])


@pytest.mark.parametrize('path', ADAPTER_CONFIGS, ids=[osp.basename(p) for p in ADAPTER_CONFIGS])
def test_every_adapter_config_passes_the_checks_and_builds(path, tmp_path):
    cfg = prepare_config(path, str(tmp_path))  # key, value, class-count and environment checks
    model = build_model(cfg, device='meta')  # never allocated
    bb = model.backbone
    assert type(bb).__name__ == 'InternViTAdapter' and model.with_neck is False
    assert model.decode_head.lateral_convs[0].conv.weight.shape[0] == cfg.model.decode_head.channels
    assert model.decode_head.in_channels == [bb.embed_dims] * 4 and model.auxiliary_head.in_channels == bb.embed_dims
    assert bb.interaction_indexes[0][0] == 0 and bb.interaction_indexes[-1][1] == bb.num_layers - 1
    want = torch.bfloat16 if '_1xb2-accum8-' in path else torch.float32
    for name, p in model.named_parameters():
        assert p.dtype == (want if name.startswith(VIT) else torch.float32), name
        if bb.freeze_vit:
            assert p.requires_grad == (not name.startswith(VIT)), name


# ----------------------------------------------------------------------------- the published recipe
def test_published_recipe_frozen_6b_adapter():
    """InternVL-MMDetSeg's upernet_intern_vit_adapter_6b_512_80k_ade20k_bs16_lr4e-5.py, value by value (issue 28)."""
    c = _cfg('upernet_internvit-adapter-6b-frozen_8xb2-80k_ade20k-512x512.py')
    b = c.model.backbone
    assert b.type == 'InternViTAdapter' and b.arch == '6b' and b.patch_size == 16 and b.img_size == 512
    assert b.init_cfg == dict(type='Pretrained', checkpoint='checkpoints/InternViT-6B-224px')
    assert b.interaction_indexes == [[0, 11], [12, 23], [24, 35], [36, 47]]
    assert (b.deform_ratio, b.cffn_ratio, b.init_values, b.with_cp, b.freeze_vit) == (0.25, 0.25, 0.0, True, True)
    assert (b.conv_inplane, b.n_points, b.with_cffn) == (64, 4, True)
    assert b.use_extra_extractor and b.use_final_norm
    assert b.add_vit_feature and b.drop_path_rate == 0.0 and b.get('deform_num_heads') is None  # 25, the ViT's
    d, a = c.model.decode_head, c.model.auxiliary_head
    assert d.type == 'UPerHead' and d.in_channels == [3200] * 4 and d.channels == 1536 and d.num_classes == 150
    assert d.in_index == [0, 1, 2, 3] and d.pool_scales == (1, 2, 3, 6)
    assert a.type == 'FCNHead' and a.in_channels == 3200 and a.channels == 1536 and a.in_index == 2
    assert a.loss_decode.loss_weight == 0.4 and 'neck' not in c.model
    assert c.crop_size == (512, 512) and c.model.data_preprocessor.size == (512, 512)
    assert c.model.data_preprocessor.test_cfg == dict(size_divisor=32)
    assert c.model.test_cfg == dict(mode='slide', crop_size=(512, 512), stride=(341, 341))
    assert c.train_cfg.max_iters == 80000 and c.train_dataloader.batch_size == 2  # x 8 GPUs = 16
    o = c.optim_wrapper
    assert o.optimizer.type == 'AdamW' and o.optimizer.lr == 4e-5 and o.optimizer.weight_decay == 0.05
    assert o.optimizer.betas == (0.9, 0.999) and o.paramwise_cfg.layer_decay_rate == 0.95
    assert o.constructor == 'InternViTLayerDecayOptimWrapperConstructor'
    assert _sched(c) == (1e-6, 1500, 1500, 80000) and c.param_scheduler[1].power == 1.0
    train = [t['type'] for t in c.train_pipeline]
    assert train == ['LoadImageFromFile', 'LoadAnnotations', 'CheckSegMap', 'RandomResize', 'RandomCrop', 'RandomFlip',
                     'PhotoMetricDistortion', 'PackSegInputs']
    assert c.train_pipeline[3].scale == (2048, 512) and c.train_pipeline[3].ratio_range == (0.5, 2.0)
    assert c.train_pipeline[4].cat_max_ratio == 0.75
    assert c.test_dataloader.dataset.pipeline[1] == dict(type='ResizeShortSide', short_side=512)  # SETR_Resize
    assert c.train_dataloader.dataset.pipeline == c.train_pipeline


def test_one_gpu_variant_holds_the_frozen_vit_in_bf16():
    base = _cfg('upernet_internvit-adapter-6b-frozen_8xb2-80k_ade20k-512x512.py')
    c = _cfg('upernet_internvit-adapter-6b-frozen_1xb2-accum8-80k_ade20k-512x512.py')
    assert c.model.backbone.weights_dtype == 'bf16' and c.optim_wrapper.accumulative_counts == 8
    assert c.train_cfg.max_iters == 80000 * 8 and c.train_dataloader.batch_size == 2  # 2 x 8 = 16 per update
    assert c.default_hooks.param_scheduler.type == 'AccumulationSchedulerHook'
    assert _sched(c) == _sched(base)  # the schedule in optimizer updates
    assert c.model.decode_head.norm_cfg.type == 'BN' and c.model.auxiliary_head.norm_cfg.type == 'BN'
    c.model.backbone.pop('weights_dtype')
    assert c.model.backbone == base.model.backbone  # nothing else changed


ONE_GPU = sorted(glob.glob(str(ROOT / 'mmcfg/internvit/*_1xb2-accum8-*.py')))


@pytest.mark.parametrize('path', ONE_GPU, ids=[osp.basename(p) for p in ONE_GPU])
def test_one_gpu_configs_are_their_8_gpu_config_with_the_accumulation_changes_only(path):
    """Every one-GPU config (linear, UperNet, adapter; their one-GPU settings come from
    _base_/recipes/one_gpu_accum8.py) is its 8-GPU config with exactly these changes, written out here: 8
    accumulated steps, iterations, validation, checkpoint and log intervals x 8, the schedules stepped per update,
    BN for SyncBN in every head that has one, the backbone held in bf16; the base's helper key is no key of it."""
    eight = Config.fromfile(path.replace('_1xb2-accum8-', '_8xb2-')).to_dict()
    one = Config.fromfile(path).to_dict()
    assert eight['train_cfg']['max_iters'] == 80000 and eight['optim_wrapper'].get('accumulative_counts') is None
    want = eight
    want['accumulative_counts'] = 8
    want['bn'] = dict(type='BN', requires_grad=True)
    want['optim_wrapper']['accumulative_counts'] = 8
    want['train_cfg'].update(max_iters=640000, val_interval=eight['train_cfg']['val_interval'] * 8)
    hooks = want['default_hooks']
    hooks['param_scheduler'] = dict(type='AccumulationSchedulerHook')
    hooks['logger']['interval'] *= 8
    hooks['checkpoint']['interval'] *= 8
    want['model']['backbone']['weights_dtype'] = 'bf16'
    heads = [h for h in ('decode_head', 'auxiliary_head') if h in want['model']]
    for h in heads:
        assert want['model'][h]['norm_cfg']['type'] == 'SyncBN'
        want['model'][h]['norm_cfg'] = dict(type='BN', requires_grad=True)
    assert one == want
    assert (one['train_cfg']['val_interval'], one['default_hooks']['logger']['interval'],
            one['default_hooks']['checkpoint']['interval']) == (64000, 400, 64000)
    assert heads == (['decode_head'] if osp.basename(path).startswith('linear_') else ['decode_head', 'auxiliary_head'])


def test_one_gpu_settings_live_in_the_base_only():
    """The one-GPU block is written once (_base_/recipes/one_gpu_accum8.py): a leaf that sets the counts itself
    would drift from the others when the recipe changes."""
    assert len(ONE_GPU) == 9  # 3 6B releases x (linear, UperNet, adapter + UperNet)
    for path in ONE_GPU:
        tree = ast.parse(Path(path).read_text())
        assigned = {t.id for node in tree.body if isinstance(node, ast.Assign) for t in ast.walk(node.targets[0])
                    if isinstance(t, ast.Name)}
        assert not assigned & {'accumulative_counts', 'bn'}, path
        assert 'AccumulationSchedulerHook' not in Path(path).read_text() and '8000' not in Path(path).read_text()
        assert "'../_base_/recipes/one_gpu_accum8.py'" in Path(path).read_text(), path


@pytest.mark.parametrize('tag,arch,path', [
    ('6b-448px-v1-5', '6b-448px-v1.5', 'checkpoints/InternViT-6B-448px-V1-5'),
    ('6b-448px-v2-5', '6b-448px-v2.5', 'checkpoints/InternViT-6B-448px-V2_5')])
def test_448px_variants(tag, arch, path):
    c = _cfg(f'upernet_internvit-adapter-{tag}-frozen_8xb2-80k_ade20k-512x512.py')
    ref = _cfg('upernet_internvit-adapter-6b-frozen_8xb2-80k_ade20k-512x512.py')
    plain = _cfg(f'upernet_internvit-{tag}-frozen_8xb2-80k_ade20k-504x504.py')
    b = c.model.backbone
    assert b.arch == arch and b.init_cfg.checkpoint == path and b.patch_size == 16 and b.img_size == 512
    # 45 blocks; each interaction ends at a block the plain UperNet of this release taps
    assert b.interaction_indexes == [[0, 11], [12, 22], [23, 33], [34, 44]]
    assert tuple(last for _, last in b.interaction_indexes) == plain.model.backbone.out_indices
    for k in ('deform_ratio', 'cffn_ratio', 'init_values', 'freeze_vit', 'with_cp'):
        assert b[k] == ref.model.backbone[k], k
    assert c.model.decode_head == ref.model.decode_head and c.optim_wrapper == ref.optim_wrapper
    one = _cfg(f'upernet_internvit-adapter-{tag}-frozen_1xb2-accum8-80k_ade20k-512x512.py')
    assert one.model.backbone.weights_dtype == 'bf16' and one.model.backbone.arch == arch


def test_300m_variant_is_full_tuning_with_vit_adapter_l_settings():
    c = _cfg('upernet_internvit-adapter-300m_8xb2-80k_ade20k-512x512.py')
    b = c.model.backbone
    assert b.arch == '300m' and b.init_cfg.checkpoint == 'checkpoints/InternViT-300M-448px' and not b.freeze_vit
    assert b.interaction_indexes == [[0, 5], [6, 11], [12, 17], [18, 23]]
    assert (b.deform_num_heads, b.deform_ratio, b.cffn_ratio, b.drop_path_rate) == (16, 0.5, 0.25, 0.4)
    assert b.get('weights_dtype') is None and b.with_cp
    assert c.model.decode_head.in_channels == [1024] * 4 and c.model.auxiliary_head.in_channels == 1024
    assert c.optim_wrapper.paramwise_cfg.layer_decay_rate == 0.95 and c.optim_wrapper.optimizer.lr == 4e-5
    assert _sched(c) == (1e-6, 1500, 1500, 80000)


# ----------------------------------------------------------------------------- layer decay
def _fork_layer_id(name: str, num_layers: int) -> int:
    """InternVL-MMDetSeg's mmcv_custom/layer_decay_optimizer_constructor.py get_num_layer_for_vit, with its
    num_max_layer = paramwise num_layers + 2."""
    num_max_layer = num_layers + 2
    if name in ('backbone.cls_token', 'backbone.mask_token', 'backbone.pos_embed', 'backbone.visual_embed'):
        return 0
    if name.startswith(('backbone.visual_embed', 'backbone.patch_embed')):
        return 0
    if name.startswith(('backbone.blocks', 'backbone.layers')):
        return int(name.split('.')[2]) + 1
    return num_max_layer - 1


def _groups(cfg):
    from mmengine.optim import build_optim_wrapper
    model = build_model(cfg)
    ow = build_optim_wrapper(model, dict(type='OptimWrapper', optimizer=dict(type='AdamW', lr=1.0, weight_decay=0.05),
                                         constructor=cfg.optim_wrapper.constructor,
                                         paramwise_cfg=cfg.optim_wrapper.paramwise_cfg))
    by_param = {id(p): g for g in ow.optimizer.param_groups for p in g['params']}
    return model, by_param


def _reduced(name, **backbone):
    cfg = _cfg(name)
    cfg.model.backbone.update(init_cfg=None, with_cp=False, **backbone)
    cfg.model.decode_head.update(in_channels=[64] * 4, channels=32)
    cfg.model.auxiliary_head.update(in_channels=64, channels=16)
    return cfg


TINY_6B = dict(embed_dims=64, num_layers=4, num_heads=4, feedforward_channels=128, norm_type='rms_norm',
               qk_normalization=True, qkv_bias=False, patch_size=14, img_size=56)


def test_layer_decay_gives_adapter_and_blocks_the_forks_layer_ids():
    """300M recipe (full tuning) at reduced depth: each parameter's lr scale and weight decay as the fork's
    constructor computes them (adapter: spm, interactions, level_embed, up, norm1-4 at num_layers + 1)."""
    arch = dict(TINY_6B, norm_type='layer_norm', qk_normalization=False, qkv_bias=True)
    cfg = _reduced('upernet_internvit-adapter-300m_8xb2-80k_ade20k-512x512.py', arch=arch, deform_num_heads=4,
                   interaction_indexes=[[0, 0], [1, 1], [2, 2], [3, 3]], drop_path_rate=0.1)
    model, by_param = _groups(cfg)
    L, rate = 4, 0.95
    seen = set()
    for name, p in model.named_parameters():
        lid = _fork_layer_id(name, L)
        g = by_param[id(p)]
        assert g['lr'] == pytest.approx(rate ** (L + 2 - lid - 1)), name
        assert g['weight_decay'] == (0.0 if p.ndim == 1 or name.endswith('.bias') else 0.05), name
        seen.add(name.split('.')[1] if name.startswith('backbone.') else name.split('.')[0])
    assert {'spm', 'interactions', 'level_embed', 'up', 'norm1', 'norm4', 'blocks', 'patch_embed', 'pos_embed',
            'decode_head', 'auxiliary_head'} <= seen
    assert by_param[id(model.backbone.blocks[0].mlp.fc1.weight)]['lr'] == pytest.approx(rate ** 4)
    assert by_param[id(model.backbone.spm.fc1.weight)]['lr'] == pytest.approx(1.0)


def test_frozen_recipe_trains_only_adapter_and_heads_at_full_lr():
    cfg = _reduced('upernet_internvit-adapter-6b-frozen_8xb2-80k_ade20k-512x512.py', arch=dict(TINY_6B),
                   interaction_indexes=[[0, 1], [2, 3]], deform_num_heads=4)
    model, by_param = _groups(cfg)
    trained = {n for n, p in model.named_parameters() if id(p) in by_param}
    assert trained == {n for n, _ in model.named_parameters() if not n.startswith(VIT)}
    assert all(by_param[id(p)]['lr'] == pytest.approx(1.0) for n, p in model.named_parameters() if n in trained)


# ----------------------------------------------------------------------------- demo training
@pytest.fixture(scope='module')
def demo_data(tmp_path_factory):
    # 100x140 validation images: the test resize makes them 128x160 (multiples of 32)
    return str(make_demo_dataset(tmp_path_factory.mktemp('adapter_demo') / 'shapes', seed=3, num_train=8, num_val=3,
                                 size=(100, 140)))


def _opts(data_root, iters=2):
    o = {f'{s}_dataloader.{k}': v for s in ('train', 'val', 'test')
         for k, v in (('dataset.data_root', data_root), ('num_workers', 0), ('persistent_workers', False))}
    o.update({'train_dataloader.batch_size': 2, 'train_cfg.max_iters': iters, 'train_cfg.val_interval': iters,
              'default_hooks.checkpoint.interval': iters, 'default_hooks.logger.interval': 1,
              'param_scheduler': [dict(type='ConstantLR', factor=1.0, by_epoch=False)]})
    return o


@pytest.mark.slow
def test_demo_config_trains_and_its_checkpoint_evaluates(demo_data, tmp_path):
    """tools/train.py's entry point on the demo config: adapter, ViT and head weights move between iterations 1
    and 3 (resumed), and the checkpoint loads strictly and evaluates."""
    from perception.apis import evaluate, train
    wd = str(tmp_path / 'work')
    keep = {'default_hooks.checkpoint.max_keep_ckpts': 2}
    train(DEMO, work_dir=wd, cfg_options=dict(_opts(demo_data, iters=1), **keep))
    runner = train(DEMO, work_dir=wd, resume=True, cfg_options=dict(_opts(demo_data, iters=3), **keep))
    assert runner.iter == 3
    first, last = (torch.load(osp.join(wd, f'iter_{i}.pth'), map_location='cpu', weights_only=True)['state_dict']
                   for i in (1, 3))
    for k in ('backbone.spm.fc1.weight', 'backbone.interactions.3.extractor.attn.value_proj.weight',
              'backbone.level_embed', 'backbone.blocks.0.attn.qkv.weight', 'decode_head.conv_seg.weight'):
        assert not torch.equal(first[k], last[k]), k
    metrics = evaluate(DEMO, osp.join(wd, 'iter_3.pth'), work_dir=wd, cfg_options=_opts(demo_data))
    assert 0 <= metrics['mIoU'] <= 100


# ----------------------------------------------------------------------------- fork checkpoints
CLASSES = ('background', 'square', 'circle', 'triangle', 'stripes', 'dots')


def _fork_meta(cfg_text: str, it: int):
    """What the fork's tools/train.py + mmcv 1.7 runner put in ``meta`` (mmseg 0.27)."""
    return dict(env_info='sys.platform: linux\nPython: 3.8.13\nPyTorch: 1.12.0+cu113\nMMCV: 1.7.0',
                seed=1234, exp_name='upernet_intern_vit_adapter_6b_512_80k_ade20k_bs16_lr4e-5.py',
                mmseg_version='0.27.0+1c0a4b2', config=cfg_text, CLASSES=CLASSES,
                PALETTE=[[0, 0, 0], [220, 20, 60], [0, 128, 0], [0, 0, 230], [255, 215, 0], [128, 0, 128]],
                epoch=1, iter=it)


def _fork_state(model):
    """The segmentor's state dict as the fork's DeepSpeed fp16 run holds it: the backbone in fp16
    (ToFloat16Hook), heads fp32; an ``OrderedDict`` with ``_metadata`` as ``state_dict()`` returns it."""
    sd = model.state_dict()
    out = OrderedDict((k, v.half() if k.startswith('backbone.') and v.is_floating_point() else v.clone())
                      for k, v in sd.items())
    out._metadata = sd._metadata
    return out


def save_mmcv1(model, path, it=8):
    """mmcv 1.7 ``save_checkpoint`` (the fork without DeepSpeed): meta + mmcv_version/time, state_dict, optimizer."""
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=4e-5, weight_decay=0.05)
    for p in model.parameters():
        p.grad = torch.zeros_like(p) if p.requires_grad else None
    opt.step()
    meta = dict(_fork_meta('model = dict(type="EncoderDecoder")', it), mmcv_version='1.7.0',
                time='Tue Jan 16 10:00:00 2024')
    torch.save({'meta': meta, 'state_dict': _fork_state(model), 'optimizer': opt.state_dict()}, path)


def save_deepspeed(model, work_dir, it=8):
    """mmcv 1.7 (fork) ``IterBasedRunner.save_deepspeed_checkpoint``: ``iter_N/`` with DeepSpeed 0.8's
    ``engine.save_checkpoint(tag=None, client_state=meta, save_latest=False)``, i.e.
    ``iter_N/global_stepN/mp_rank_00_model_states.pt`` (module + engine fields + the meta at the top level) and
    the ZeRO-1 optimizer shard, and the runner's ``latest`` link to ``iter_N``."""
    sd = _fork_state(model)
    step = Path(work_dir) / f'iter_{it}' / f'global_step{it}'
    step.mkdir(parents=True)
    shapes = OrderedDict((n, p.shape) for n, p in model.named_parameters() if p.requires_grad)
    state = dict(module=sd, buffer_names=[n for n, _ in model.named_buffers()], optimizer=None, param_shapes=[shapes],
                 lr_scheduler=None, sparse_tensor_module_names=set(), skipped_steps=0, global_steps=it,
                 global_samples=16 * it, dp_world_size=8, mp_world_size=1,
                 ds_config={'train_batch_size': 16, 'fp16': {'enabled': True, 'auto_cast': False},
                            'zero_optimization': {'stage': 1}}, ds_version='0.8.0')
    state.update(_fork_meta('...', it))
    torch.save(state, step / 'mp_rank_00_model_states.pt')
    torch.save({'optimizer_state_dict': {'loss_scaler': None}, 'ds_config': state['ds_config'],
                'ds_version': '0.8.0'}, step / 'zero_pp_rank_0_mp_rank_00_optim_states.pt')
    os.symlink(f'iter_{it}', Path(work_dir) / 'latest')
    return str(Path(work_dir) / f'iter_{it}')


def _tool_test(capsys, *argv):
    from perception.common.cli import run_main
    mod = load_tool(ROOT / 'tools' / 'test.py')
    capsys.readouterr()
    status = run_main(mod.main, [str(a) for a in argv])
    out, err = capsys.readouterr()
    lines = [ln for ln in out.splitlines() if ln.startswith('{')]
    return status, (ast.literal_eval(lines[-1]) if lines else None), err


def _cli_opts(demo_data):
    return ['--cfg-options'] + [f'{k}={v}' for k, v in _opts(demo_data).items()
                                if k.startswith(('val_', 'test_'))]


@pytest.fixture(scope='module')
def fork_model():
    from perception.config import load_config
    cfg = load_config(DEMO)
    cfg.model.backbone.init_cfg = None
    model = build_model(cfg)
    randomize_(model, seed=7)
    with torch.no_grad():  # the BN statistics of a trained model
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    return model


def _direct_miou(fork_model, demo_data, tmp_path):
    """The same weights in the Runner's model by torch's own strict load_state_dict, evaluated by mmseg."""
    from perception.config import build_runner
    cfg = prepare_config(DEMO, str(tmp_path / 'direct'), cfg_options=_opts(demo_data))
    cfg.load_from = None
    runner = build_runner(cfg)
    runner.model.load_state_dict({k: v.float() if v.is_floating_point() else v
                                  for k, v in _fork_state(fork_model).items()}, strict=True)
    return runner.test()['mIoU']


@pytest.mark.slow
def test_tools_test_evaluates_fork_checkpoints(fork_model, demo_data, tmp_path, capsys):
    direct = _direct_miou(fork_model, demo_data, tmp_path)
    save_mmcv1(fork_model, tmp_path / 'fork.pth')
    ds = save_deepspeed(fork_model, tmp_path / 'ds_run')
    for ckpt in (tmp_path / 'fork.pth', ds, tmp_path / 'ds_run' / 'latest'):
        status, metrics, err = _tool_test(capsys, DEMO, ckpt, '--work-dir', tmp_path / 'wd', *_cli_opts(demo_data))
        assert status == 0, err
        assert metrics['mIoU'] == pytest.approx(direct, abs=0.01), ckpt
    # and tensor for tensor: the loader's model is the fork's (fp16 backbone widened exactly)
    from perception.segmentation.checkpoint import load_segmentor_checkpoint
    from perception.config import load_config
    cfg = load_config(DEMO)
    cfg.model.backbone.init_cfg = None
    fresh = build_model(cfg)
    for ckpt in (tmp_path / 'fork.pth', ds):
        load_segmentor_checkpoint(fresh, str(ckpt))
        want = _fork_state(fork_model)
        assert all(torch.equal(v, want[k].to(v.dtype)) for k, v in fresh.state_dict().items())


def _wrong(fork_model, tmp_path, **arch):
    from perception.config import load_config
    cfg = load_config(DEMO)
    cfg.model.backbone.init_cfg = None
    cfg.model.backbone.arch.update(arch)
    depth = cfg.model.backbone.arch.num_layers
    cfg.model.backbone.interaction_indexes = [[0, depth - 4]] + [[i, i] for i in range(depth - 3, depth)]
    width = cfg.model.backbone.arch.embed_dims
    cfg.model.decode_head.in_channels = [width] * 4
    cfg.model.auxiliary_head.in_channels = width
    path = tmp_path / f'fork_{width}x{depth}.pth'
    save_mmcv1(build_model(cfg), path)
    return path


def test_fork_checkpoint_of_another_width_is_refused_naming_key_and_shapes(fork_model, demo_data, tmp_path, capsys):
    from perception.segmentation.checkpoint import load_segmentor_checkpoint
    path = _wrong(fork_model, tmp_path, embed_dims=128, feedforward_channels=256)
    status, _, err = _tool_test(capsys, DEMO, path, '--work-dir', tmp_path / 'wd', *_cli_opts(demo_data))
    line = [ln for ln in err.splitlines() if ln.strip()][-1]
    assert status != 0 and 'backbone.' in line and '128' in line and '96' in line, err
    with pytest.raises(CheckpointError) as e:  # the loader itself (tools/test.py checks before it)
        load_segmentor_checkpoint(fork_model, str(path))
    msg = str(e.value)
    first = 'first mismatching key backbone.pos_embed: checkpoint (1, 65, 128) vs model (1, 65, 96)'
    assert '\n' not in msg and first in msg and '128 wide with 4 blocks' in msg, msg
    assert 'missing' not in msg and 'unexpected' not in msg, msg


def test_fork_checkpoint_of_another_depth_is_refused_naming_the_blocks(fork_model, tmp_path):
    from perception.segmentation.checkpoint import load_segmentor_checkpoint
    path = _wrong(fork_model, tmp_path, num_layers=6)
    with pytest.raises(CheckpointError) as e:
        load_segmentor_checkpoint(fork_model, str(path))
    msg = str(e.value)
    assert '\n' not in msg and '96 wide with 6 blocks' in msg and '96 wide with 4' in msg, msg
    assert 'unexpected keys: backbone.blocks.4.' in msg, msg


def test_adapter_segmentor_file_without_backbone_is_refused(fork_model, tmp_path):
    from perception.segmentation.checkpoint import load_segmentor_checkpoint
    sd = {k: v for k, v in fork_model.state_dict().items() if not k.startswith('backbone.')}
    torch.save({'state_dict': sd}, tmp_path / 'heads.pth')
    with pytest.raises(CheckpointError, match='holds no backbone weights.*trained adapter'):
        load_segmentor_checkpoint(fork_model, str(tmp_path / 'heads.pth'))


def test_test_inputs_are_padded_to_multiples_of_32_by_the_data_preprocessor():
    """Whole-image testing of a side the adapter cannot take (100 x 140): the configs' data preprocessor pads it
    to 128 x 160 (mmseg's test_cfg.size_divisor) and the prediction is cropped back; without that padding the
    adapter refuses the size in one line."""
    from mmseg.structures import SegDataSample

    from perception.config import load_config
    cfg = load_config(DEMO)
    cfg.model.backbone.init_cfg = None
    img = torch.randint(0, 256, (3, 100, 140), dtype=torch.uint8)

    def run(model):
        meta = dict(img_shape=(100, 140), ori_shape=(100, 140))
        return model.eval().test_step(dict(inputs=[img], data_samples=[SegDataSample(metainfo=meta)]))[0]
    out = run(build_model(cfg))
    assert tuple(out.seg_logits.data.shape) == (6, 100, 140) and tuple(out.img_shape) == (100, 140)
    cfg.model.data_preprocessor.pop('test_cfg')
    with pytest.raises(ValueError, match='input size 100x140 is not a multiple of 32'):
        run(build_model(cfg))
