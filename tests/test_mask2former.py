"""Mask2Former on InternViTAdapter: the configs against mmseg's own Mask2Former ADE20K configs (an independent
source: the installed mmseg's ``.mim/configs``), the key checks of its nested parts, the optimizer's groups,
and a short training run followed by ``tools/test.py`` (with ``--tta``) and ``tools/infer.py``."""
import glob
import os.path as osp
from pathlib import Path

import cv2
import numpy as np
import pytest
from mmengine.config import Config

from conftest import run_tool
from perception.apis import train
from perception.config import ConfigError, prepare_config
from perception.config.build import build_model
from perception.datasets.demo_data import make_demo_dataset

ROOT = Path(__file__).resolve().parents[1]
M2F_6B = str(ROOT / 'mmcfg/internvit/mask2former_internvit-adapter-6b-frozen_8xb2-160k_ade20k-640x640.py')
M2F_300M = str(ROOT / 'mmcfg/internvit/mask2former_internvit-adapter-300m_8xb2-160k_ade20k-640x640.py')
UPERNET_6B = str(ROOT / 'mmcfg/internvit/upernet_internvit-adapter-6b-frozen_8xb2-80k_ade20k-512x512.py')
DEMO = sorted(glob.glob(str(ROOT / 'mmcfg/demo/mask2former_internvit-adapter-tiny_*.py')))


def mmseg_config(name):
    import mmseg
    return Config.fromfile(osp.join(osp.dirname(mmseg.__file__), '.mim/configs/mask2former', name))


def without(d, *keys):
    return {k: v for k, v in d.items() if k not in keys}


@pytest.fixture(scope='module')
def demo_data(tmp_path_factory):
    return str(make_demo_dataset(tmp_path_factory.mktemp('m2f') / 'shapes', seed=1, num_train=8, num_val=2))


# ----------------------------------------------------------------------------- configs
@pytest.mark.parametrize('path', [M2F_6B, M2F_300M])
def test_configs_carry_mmseg_swin_l_recipe(path):
    """Head, losses, assigner, crop, pipelines, optimizer and schedule as mmseg's Swin-L Mask2Former ADE20K
    config; only the backbone, the head's input channels and the project's label check differ."""
    ours, ref = Config.fromfile(path), mmseg_config('mask2former_swin-l-in22k-384x384-pre_8xb2-160k_ade20k-640x640.py')
    head, ref_head = ours.model.decode_head.to_dict(), ref.model.decode_head.to_dict()
    assert without(head, 'in_channels') == without(ref_head, 'in_channels')
    assert head['num_queries'] == 100 and len(head['loss_cls']['class_weight']) == 151
    assert head['in_channels'] == [1024 if path == M2F_300M else 3200] * 4
    assert ours.model.test_cfg == ref.model.test_cfg == dict(mode='whole')
    assert ours.crop_size == ref.crop_size == (640, 640)
    assert tuple(ours.model.data_preprocessor['size']) == (640, 640)
    strip = lambda pipe: [t for t in pipe if t['type'] != 'CheckSegMap']  # noqa: E731  (the project's label check)
    assert strip(ours.train_pipeline) == ref.train_pipeline
    assert [t['type'] for t in strip(ours.test_pipeline)] == ['LoadImageFromFile', 'Resize', 'LoadAnnotations',
                                                             'PackSegInputs']
    assert ours.test_pipeline[1] == dict(type='Resize', scale=(2560, 640), keep_ratio=True)
    assert ours.optim_wrapper.optimizer == ref.optim_wrapper.optimizer
    assert ours.optim_wrapper.clip_grad == ref.optim_wrapper.clip_grad == dict(max_norm=0.01, norm_type=2)
    assert ours.param_scheduler == ref.param_scheduler
    assert ours.train_cfg.max_iters == ref.train_cfg.max_iters == 160000
    assert ours.train_dataloader.batch_size * 8 == ref.auto_scale_lr.base_batch_size == 16
    keys = ours.optim_wrapper.paramwise_cfg.custom_keys
    for k in ('query_embed', 'query_feat', 'level_embed'):
        assert keys[f'decode_head.{k}'] == ref.optim_wrapper.paramwise_cfg.custom_keys[k]
    assert 'mmdet.models' in ours.custom_imports.imports


def test_6b_backbone_is_the_adapter_upernet_one():
    """The frozen 6B's adapter settings mirror the adapter + UperNet recipe (InternVL-MMDetSeg's)."""
    m2f = Config.fromfile(M2F_6B).model.backbone.to_dict()
    assert m2f['interaction_indexes'] == [[0, 11], [12, 23], [24, 35], [36, 47]]
    assert (m2f['deform_ratio'], m2f['cffn_ratio'], m2f['init_values']) == (0.25, 0.25, 0.)
    assert m2f['with_cp'] and m2f['freeze_vit'] and m2f['patch_size'] == 16
    if osp.isfile(UPERNET_6B):
        assert m2f == Config.fromfile(UPERNET_6B).model.backbone.to_dict()


@pytest.mark.parametrize('path', [M2F_6B, M2F_300M])
def test_configs_build_on_meta_and_pass_the_checks(path, tmp_path):
    cfg = prepare_config(path, str(tmp_path / 'w'))
    model = build_model(cfg, device='meta')
    trainable = {n.split('.')[1] for n, p in model.backbone.named_parameters(prefix='backbone') if p.requires_grad}
    if path == M2F_6B:  # the ViT frozen, the adapter trained
        assert trainable == {'spm', 'interactions', 'level_embed', 'up', 'norm1', 'norm2', 'norm3', 'norm4'}
        assert sum(p.numel() for p in model.backbone.blocks.parameters()) > 5.5e9
    else:
        assert {'blocks', 'patch_embed', 'spm', 'interactions'} <= trainable
    assert not osp.exists(tmp_path / 'w')  # nothing written by the checks


@pytest.mark.parametrize('key, near', [('train_cfg.num_pointz', 'num_points'),
                                       ('pixel_decoder.num_outz', 'num_outs'),
                                       ('transformer_decoder.num_layerz', 'num_layers'),
                                       ('num_querys', 'num_queries')])
def test_misspelt_mask2former_keys_are_named(key, near, tmp_path):
    """A train_cfg key Mask2FormerHead would ignore (a misspelt num_points trains with 12544 points) and the
    nested decoders' keys are refused in one line naming the path and the closest name."""
    import re
    with pytest.raises(ConfigError, match=re.escape(f'model.decode_head.{key}: ') + f".*'{near}'"):
        prepare_config(M2F_300M, str(tmp_path / 'w'), cfg_options={f'model.decode_head.{key}': 3})


def test_300m_optimizer_groups_follow_the_recipe():
    """The pretrained ViT at lr_mult 0.1, the new adapter and the head at the full lr; queries, level embeds,
    position embedding and norms without weight decay (at a reduced width: the 300M layout, 2 blocks)."""
    from mmengine.optim import build_optim_wrapper
    cfg = Config.fromfile(M2F_300M)
    small = dict(embed_dims=64, num_layers=4, num_heads=4, feedforward_channels=128, norm_type='layer_norm',
                 qk_normalization=False, qkv_bias=True, patch_size=16, img_size=64)
    cfg.model.backbone.update(arch=small, interaction_indexes=[[0, 0], [1, 1], [2, 2], [3, 3]], deform_num_heads=4,
                              init_cfg=None)
    cfg.model.decode_head.in_channels = [64] * 4
    model = build_model(cfg)
    groups = build_optim_wrapper(model, cfg.optim_wrapper).optimizer.param_groups
    ids = {id(p): n for n, p in model.named_parameters()}
    got = {ids[id(g['params'][0])]: (g['lr'], g['weight_decay']) for g in groups}
    lr, wd = 1e-4, 0.05
    expect = {'backbone.blocks.0.attn.qkv.weight': (lr * 0.1, wd), 'backbone.patch_embed.proj.weight': (lr * 0.1, wd),
              'backbone.pos_embed': (lr * 0.1, 0.), 'backbone.blocks.0.norm1.weight': (lr * 0.1, 0.),
              'backbone.spm.stem.0.weight': (lr, wd), 'backbone.interactions.0.injector.gamma': (lr, wd),
              'backbone.norm1.weight': (lr, 0.), 'decode_head.query_embed.weight': (lr, 0.),
              'decode_head.query_feat.weight': (lr, 0.), 'decode_head.level_embed.weight': (lr, 0.),
              'decode_head.cls_embed.weight': (lr, wd)}
    for name, (want_lr, want_wd) in expect.items():
        assert name in got, name
        assert got[name][0] == pytest.approx(want_lr) and got[name][1] == pytest.approx(want_wd), name


@pytest.mark.parametrize('path', DEMO)
def test_demo_config_is_the_tiny_m2f(path):
    cfg = Config.fromfile(path)
    assert len(DEMO) == 1
    assert cfg.model.decode_head.type == 'Mask2FormerHead' and cfg.model.decode_head.num_classes == 6
    assert cfg.model.backbone.type == 'InternViTAdapter'
    assert cfg.crop_size[0] % 32 == 0 and cfg.crop_size[1] % 32 == 0
    assert [t for t in cfg.test_pipeline if t['type'] == 'ResizeShortSide'][0]['size_divisor'] % 32 == 0


# ----------------------------------------------------------------------------- train / test / infer
def _opts(data_root, iters):
    o = {f'{k}_dataloader.dataset.data_root': data_root for k in ('train', 'val', 'test')}
    o.update({f'{k}_dataloader.num_workers': 0 for k in ('train', 'val', 'test')})
    o.update({f'{k}_dataloader.persistent_workers': False for k in ('train', 'val', 'test')})
    o.update({'train_dataloader.batch_size': 4, 'train_cfg.max_iters': iters, 'train_cfg.val_interval': iters,
              'default_hooks.checkpoint.interval': iters, 'default_hooks.logger.interval': 1,
              'param_scheduler': [dict(type='ConstantLR', factor=1.0, by_epoch=False)]})
    return o


@pytest.mark.slow
def test_train_then_test_tta_and_infer_an_awkward_size(demo_data, tmp_path, capsys):
    cfg = DEMO[0]
    wd = str(tmp_path / 'w')
    iters = 8
    runner = train(cfg, work_dir=wd, fp32=True, cfg_options=_opts(demo_data, iters))
    losses = np.asarray(runner.message_hub.get_scalar('train/loss').data[0], dtype=float)
    assert len(losses) == iters and np.isfinite(losses).all()
    assert losses[-3:].mean() < losses[:3].mean()  # it learns: Mask2Former's loss falls fast from the start
    ckpt = osp.join(wd, f'iter_{iters}.pth')
    assert osp.isfile(ckpt)
    sizes = {}
    for extra, name in (([], 'plain'), (['--tta'], 'tta')):
        out = tmp_path / name
        status, err = run_tool(capsys, 'test', cfg, ckpt, '--work-dir', str(tmp_path / f't_{name}'), '--out', str(out),
                               '--cfg-options', *[f'{k}={v}' for k, v in _opts(demo_data, iters).items()
                                                  if k.startswith('test_dataloader')], *extra)
        assert status == 0, err[-2000:]
        labels = sorted(out.glob('*.png'))
        assert len(labels) == 2
        sizes[name] = [cv2.imread(str(p), -1).shape for p in labels]
    assert sizes['plain'] == sizes['tta'] == [(112, 112)] * 2  # back at the image size
    imgs = tmp_path / 'imgs'
    imgs.mkdir()
    src = cv2.imread(sorted(glob.glob(osp.join(demo_data, 'images/validation/*.jpg')))[0])
    cv2.imwrite(str(imgs / 'odd.png'), cv2.resize(src, (150, 97)))  # 97 x 150: no multiple of 32 or 16
    for extra, name in (([], 'whole'), (['--slide', '64', '32'], 'slide')):  # slide: the windows' own pad_shape
        status, err = run_tool(capsys, 'infer', cfg, ckpt, str(imgs), '--out', str(tmp_path / name), *extra)
        assert status == 0, err[-2000:]
        label = cv2.imread(str(tmp_path / name / 'odd_label.png'), -1)
        assert label.shape == (97, 150) and label.max() < 6
        assert cv2.imread(str(tmp_path / name / 'odd_overlay.jpg')).shape[0] == 97


@pytest.mark.slow
def test_adapter_upernet_demo_tests_with_tta_and_infers_an_awkward_size(demo_data, tmp_path, capsys):
    """The other new family (InternViTAdapter + UperNet) through the same tools."""
    cfgs = glob.glob(str(ROOT / 'mmcfg/demo/upernet_internvit-adapter-tiny_*.py'))
    assert len(cfgs) == 1
    wd = str(tmp_path / 'w')
    train(cfgs[0], work_dir=wd, fp32=True, cfg_options=_opts(demo_data, 2))
    ckpt = osp.join(wd, 'iter_2.pth')
    opts = [f'{k}={v}' for k, v in _opts(demo_data, 2).items() if k.startswith('test_dataloader')]
    status, err = run_tool(capsys, 'test', cfgs[0], ckpt, '--work-dir', str(tmp_path / 't'), '--out',
                           str(tmp_path / 'tta'), '--tta', '--cfg-options', *opts)
    assert status == 0, err[-2000:]
    assert [cv2.imread(str(p), -1).shape for p in sorted((tmp_path / 'tta').glob('*.png'))] == [(112, 112)] * 2
    imgs = tmp_path / 'imgs'
    imgs.mkdir()
    src = cv2.imread(sorted(glob.glob(osp.join(demo_data, 'images/validation/*.jpg')))[0])
    cv2.imwrite(str(imgs / 'odd.png'), cv2.resize(src, (150, 97)))
    status, err = run_tool(capsys, 'infer', cfgs[0], ckpt, str(imgs), '--out', str(tmp_path / 'inf'))
    assert status == 0, err[-2000:]
    assert cv2.imread(str(tmp_path / 'inf/odd_label.png'), -1).shape == (97, 150)
