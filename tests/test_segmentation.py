"""Segmentation on mmseg 1.x: configs, training/resume/test, format C, layer decay, data checks."""
import glob
import os
import os.path as osp
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope

from benchmarks import reference as ref
from conftest import TINY, randomize_
from perception.apis import evaluate, train
from perception.config import prepare_config
from perception.checkpoint import CheckpointError
from perception.datasets.demo_data import make_demo_dataset
from perception.engine.layer_decay import layer_id_for

ROOT = Path(__file__).resolve().parents[1]
DEMO_UPERNET = str(ROOT / 'mmcfg/demo/upernet_internvit-tiny_1xb8-1k_demo-shapes-112x112.py')
DEMO_LINEAR = str(ROOT / 'mmcfg/demo/linear_internvit-tiny_1xb8-1k_demo-shapes-112x112.py')


@pytest.fixture(scope='module')
def demo_data(tmp_path_factory):
    return str(make_demo_dataset(tmp_path_factory.mktemp('demo') / 'shapes', seed=1, num_train=12, num_val=3))


def _opts(data_root, iters=2, **extra):
    o = {'train_dataloader.dataset.data_root': data_root, 'val_dataloader.dataset.data_root': data_root,
         'test_dataloader.dataset.data_root': data_root, 'train_dataloader.batch_size': 2,
         'train_dataloader.num_workers': 0, 'train_dataloader.persistent_workers': False,
         'val_dataloader.num_workers': 0, 'val_dataloader.persistent_workers': False,
         'test_dataloader.num_workers': 0, 'test_dataloader.persistent_workers': False,
         'train_cfg.max_iters': iters, 'train_cfg.val_interval': iters,
         'default_hooks.checkpoint.interval': iters, 'default_hooks.logger.interval': 1,
         'param_scheduler': [dict(type='ConstantLR', factor=1.0, by_epoch=False)]}
    o.update(extra)
    return o


# ----------------------------------------------------------------------------- configs
LEAF_CONFIGS = sorted(glob.glob(str(ROOT / 'mmcfg/internvit/*.py'))) + sorted(glob.glob(str(ROOT / 'mmcfg/demo/*.py')))


def test_config_count():
    ade = glob.glob(str(ROOT / 'mmcfg/internvit/*_ade20k-*.py'))
    plain = [f for f in ade if 'adapter' not in f]
    assert len([f for f in plain if '_1xb2-accum8-' not in f]) == 32  # 4 backbones x 8 experiments
    assert len([f for f in plain if '_1xb2-accum8-' in f]) == 6  # 3 6B releases x (linear, UperNet) on one GPU
    adapter = [osp.basename(f) for f in ade if 'adapter' in f]
    # ViT-Adapter: UperNet on 3 6B releases (8 GPUs and one GPU) and the 300M; Mask2Former on the 6B and the 300M
    assert len([f for f in adapter if f.startswith('upernet_')]) == 7
    assert len([f for f in adapter if f.startswith('mask2former_')]) == 2
    assert len(glob.glob(str(ROOT / 'mmcfg/internvit/*.py'))) == 38 + 12 + 9  # + 3 datasets x 2 heads x 2 backbones
    assert len(glob.glob(str(ROOT / 'mmcfg/demo/*.py'))) == 4  # plain ViT linear / UperNet, adapter UperNet / Mask2Former


@pytest.mark.parametrize('path', LEAF_CONFIGS, ids=[osp.basename(p) for p in LEAF_CONFIGS])
def test_every_leaf_config_builds(path):
    import perception  # noqa: F401
    from mmseg.registry import MODELS
    init_default_scope('mmseg')
    cfg = Config.fromfile(path)
    with torch.device('meta'):
        model = MODELS.build(cfg.model)
    assert model.backbone.num_layers >= 1
    assert cfg.model.test_cfg.mode in ('slide', 'whole')


def _cfg(name):
    return Config.fromfile(str(ROOT / 'mmcfg/internvit' / name))


def _sched(cfg):
    warm, poly = cfg.param_scheduler
    return warm['end'], poly['end'], warm['start_factor']


def test_published_hyperparameters_6b():
    lin = _cfg('linear_internvit-6b-frozen_8xb2-80k_ade20k-504x504.py')
    assert lin.model.backbone.out_indices == (44, ) and lin.model.backbone.frozen
    assert lin.model.decode_head.type == 'LinearProbeHead' and lin.model.decode_head.in_channels == 3200
    assert lin.optim_wrapper.optimizer.weight_decay == 0.0
    head = _cfg('upernet_internvit-6b-frozen_8xb2-80k_ade20k-504x504.py')
    full = _cfg('upernet_internvit-6b_8xb2-80k_ade20k-504x504.py')
    for c in (lin, head, full):
        assert c.crop_size == (504, 504) and c.model.test_cfg.crop_size == (504, 504)
        assert c.model.test_cfg.stride == (322, 322)
        assert c.optim_wrapper.optimizer.lr == 4e-5 and c.optim_wrapper.optimizer.betas == (0.9, 0.999)
        assert _sched(c) == (1500, 80000, 1e-6) and c.train_cfg.max_iters == 80000
        assert c.train_dataloader.batch_size == 2 and c.model.backbone.arch == '6b'
        assert c.model.backbone.init_cfg.checkpoint == 'checkpoints/intern_vit_6b_224px.pth'
    for c in (head, full):
        assert c.model.backbone.out_indices == (11, 23, 35, 47)
        assert c.model.decode_head.channels == 1536 and c.model.decode_head.type == 'UPerHead'
        assert c.model.neck.type == 'InternViTPyramid'
        assert c.optim_wrapper.optimizer.weight_decay == 0.05
        assert c.model.auxiliary_head.loss_decode.loss_weight == 0.4
    assert head.model.backbone.frozen and head.model.auxiliary_head.in_index == 1
    assert not full.model.backbone.frozen and full.model.auxiliary_head.in_index == 2
    assert full.model.backbone.drop_path_rate == 0.4
    assert full.optim_wrapper.paramwise_cfg.layer_decay_rate == 0.95
    assert full.optim_wrapper.constructor == 'InternViTLayerDecayOptimWrapperConstructor'
    for n, iters, warm in [(16, 5000, 100), (8, 10000, 200), (4, 20000, 400), (2, 40000, 800), (1, 80000, 1500)]:
        c = _cfg(f'linear_internvit-6b-fewshot-1of{n}_8xb2-{iters // 1000}k_ade20k-504x504.py')
        assert _sched(c)[:2] == (warm, iters) and c.train_cfg.max_iters == iters
        assert c.model.backbone.out_indices == (47, ) and not c.model.backbone.frozen
        assert c.model.backbone.drop_path_rate == 0.4 and c.optim_wrapper.paramwise_cfg.layer_decay_rate == 0.95
        assert c.train_dataloader.dataset.few_shot_divisor == (n if n > 1 else None)
        resize = c.test_dataloader.dataset.pipeline[1]
        assert resize['type'] == ('ResizeShortSide' if n == 1 else 'Resize')


def test_448_and_300m_layer_choices():
    for tag in ('6b-448px-v1-5', '6b-448px-v2-5'):
        assert _cfg(f'upernet_internvit-{tag}-frozen_8xb2-80k_ade20k-504x504.py').model.backbone.out_indices == (11, 22, 33, 44)
        assert _cfg(f'linear_internvit-{tag}-frozen_8xb2-80k_ade20k-504x504.py').model.backbone.out_indices == (44, )
    assert _cfg('upernet_internvit-300m_8xb2-80k_ade20k-504x504.py').model.backbone.out_indices == (5, 11, 17, 23)
    assert _cfg('linear_internvit-300m-frozen_8xb2-80k_ade20k-504x504.py').model.backbone.out_indices == (23, )


# ----------------------------------------------------------------------------- train / resume / test
@pytest.mark.slow
@pytest.mark.parametrize('config', [DEMO_UPERNET, DEMO_LINEAR], ids=['upernet', 'linear'])
def test_train_save_resume_test(config, demo_data, tmp_path):
    wd = str(tmp_path / 'work')
    train(config, work_dir=wd, cfg_options=_opts(demo_data, iters=2))
    assert osp.isfile(osp.join(wd, 'iter_2.pth'))
    runner = train(config, work_dir=wd, resume=True, cfg_options=_opts(demo_data, iters=3,
                                                                         **{'train_cfg.val_interval': 10}))
    assert runner.iter == 3  # resumed at 2, one more iteration
    metrics = evaluate(config, osp.join(wd, 'iter_3.pth'), work_dir=wd, cfg_options=_opts(demo_data))
    assert 'mIoU' in metrics and 0 <= metrics['mIoU'] <= 100
    curves = glob.glob(osp.join(wd, '*', 'learning_curve.png'))
    assert curves and open(curves[0], 'rb').read(4) == b'\x89PNG'


def test_bf16_training_on_cpu(demo_data, tmp_path):
    cfg = prepare_config(DEMO_UPERNET, str(tmp_path), amp=True, cfg_options=_opts(demo_data))
    assert cfg.optim_wrapper.type == ('AmpOptimWrapper' if torch.cuda.is_available() else 'BF16OptimWrapper')
    runner = train(DEMO_UPERNET, work_dir=str(tmp_path), amp=True, cfg_options=_opts(demo_data))
    assert runner.iter == 2


# ----------------------------------------------------------------------------- layer decay
def test_layer_decay_groups_follow_published_rule():
    import perception  # noqa: F401
    from mmengine.optim import build_optim_wrapper
    from mmseg.registry import MODELS
    init_default_scope('mmseg')
    cfg = Config.fromfile(DEMO_UPERNET)
    cfg.model.decode_head.norm_cfg = dict(type='BN', requires_grad=True)
    cfg.model.auxiliary_head.norm_cfg = dict(type='BN', requires_grad=True)
    model = MODELS.build(cfg.model)
    ow = build_optim_wrapper(model, dict(
        type='OptimWrapper', optimizer=dict(type='AdamW', lr=1.0, weight_decay=0.05),
        constructor='InternViTLayerDecayOptimWrapperConstructor', paramwise_cfg=dict(layer_decay_rate=0.5)))
    L = model.backbone.num_layers  # 6
    by_param = {}
    for g in ow.optimizer.param_groups:
        for p in g['params']:
            by_param[id(p)] = g
    for name, p in model.named_parameters():
        g = by_param[id(p)]
        if name in ('backbone.cls_token', 'backbone.pos_embed') or name.startswith('backbone.patch_embed'):
            lid = 0
        elif name.startswith('backbone.blocks.'):
            lid = int(name.split('.')[2]) + 1
        else:
            lid = L + 1
        assert g['lr'] == pytest.approx(0.5 ** (L + 1 - lid)), name
        nowd = p.ndim == 1 or name.endswith('.bias')
        assert g['weight_decay'] == (0.0 if nowd else 0.05), name
    # as executed by the reference: pos_embed and cls_token keep the weight decay
    assert by_param[id(model.backbone.pos_embed)]['weight_decay'] == 0.05
    # names under DDP / FSDP wrappers map to the same layer ids
    assert layer_id_for('module.backbone.blocks.3.attn.qkv.weight', 48) == 4
    assert layer_id_for('backbone._fsdp_wrapped_module.blocks.3._checkpoint_wrapped_module.mlp.fc1.weight', 48) == 4
    assert 0.95 ** (48 + 1 - 0) == pytest.approx(0.0810, abs=1e-4)


def test_layer_decay_intended_exemption_option():
    import perception  # noqa: F401
    from mmengine.optim import build_optim_wrapper
    from perception.models import InternViT

    class Seg(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.backbone = InternViT(TINY)
    m = Seg()
    ow = build_optim_wrapper(m, dict(
        type='OptimWrapper', optimizer=dict(type='AdamW', lr=1.0, weight_decay=0.05),
        constructor='InternViTLayerDecayOptimWrapperConstructor',
        paramwise_cfg=dict(layer_decay_rate=0.9, exempt_pos_embed_cls_token=True)))
    g = next(g for g in ow.optimizer.param_groups if any(p is m.backbone.pos_embed for p in g['params']))
    assert g['weight_decay'] == 0.0


# ----------------------------------------------------------------------------- format C
def _pyramid_ref(sd, prefix, feats):
    """Independent pyramid: ConvT, channels-first LayerNorm, GELU, ConvT / ConvT / identity / maxpool."""
    F = torch.nn.functional

    def ln2d(x, w, b):
        mu = x.mean(1, keepdim=True)
        var = ((x - mu) ** 2).mean(1, keepdim=True)
        return (x - mu) / torch.sqrt(var + 1e-6) * w[:, None, None] + b[:, None, None]
    f0 = F.conv_transpose2d(feats[0], sd[prefix + 'up1.0.weight'], sd[prefix + 'up1.0.bias'], stride=2)
    f0 = ref.gelu_erf(ln2d(f0, sd[prefix + 'up1.1.weight'], sd[prefix + 'up1.1.bias']))
    f0 = F.conv_transpose2d(f0, sd[prefix + 'up1.3.weight'], sd[prefix + 'up1.3.bias'], stride=2)
    f1 = F.conv_transpose2d(feats[1], sd[prefix + 'up2.0.weight'], sd[prefix + 'up2.0.bias'], stride=2)
    return [f0, f1, feats[2], F.max_pool2d(feats[3], 2)]


def _released_c(tmp_path, kind):
    """A frozen InternVL ADE20K release (format C) of a tiny model + its ViT file (format A)."""
    torch.manual_seed(0)
    vit = randomize_(__import__('perception').models.InternViT(TINY), seed=21).state_dict()
    torch.save({'module': vit}, tmp_path / 'vit.pth')
    C, K = 64, 5
    g = torch.Generator().manual_seed(3)

    def r(*s):
        return torch.randn(*s, generator=g) * 0.2
    if kind == 'linear':
        heads = {'decode_head.norm.weight': 1 + r(C), 'decode_head.norm.bias': r(C),
                 'decode_head.norm.running_mean': r(C), 'decode_head.norm.running_var': 1 + r(C).abs(),
                 'decode_head.norm.num_batches_tracked': torch.tensor(100),
                 'decode_head.conv_seg.weight': r(K, C, 1, 1), 'decode_head.conv_seg.bias': r(K)}
    else:
        heads = {'backbone.up1.0.weight': r(C, C, 2, 2), 'backbone.up1.0.bias': r(C),
                 'backbone.up1.1.weight': 1 + r(C), 'backbone.up1.1.bias': r(C),
                 'backbone.up1.3.weight': r(C, C, 2, 2), 'backbone.up1.3.bias': r(C),
                 'backbone.up2.0.weight': r(C, C, 2, 2), 'backbone.up2.0.bias': r(C)}
    torch.save({'state_dict': heads, 'meta': {'iter': 80000}}, tmp_path / 'release.pth')
    return vit, heads


def test_format_c_linear_release_reproduces_independent_forward(tmp_path):
    import perception  # noqa: F401
    from perception.segmentation import load_segmentor_checkpoint
    from mmseg.registry import MODELS
    init_default_scope('mmseg')
    vit, heads = _released_c(tmp_path, 'linear')
    model = MODELS.build(dict(
        type='EncoderDecoder', data_preprocessor=dict(type='SegDataPreProcessor'),
        backbone=dict(type='InternViT', arch=TINY, out_indices=(2, ), frozen=True,
                      init_cfg=dict(type='Pretrained', checkpoint=str(tmp_path / 'vit.pth'))),
        decode_head=dict(type='LinearProbeHead', in_channels=64, channels=64, in_index=0, dropout_ratio=0.0,
                         num_classes=5, norm_cfg=dict(type='BN'), align_corners=False),
        test_cfg=dict(mode='whole')))
    load_segmentor_checkpoint(model, str(tmp_path / 'release.pth'))
    model.eval()
    img = torch.randn(1, 3, 42, 56)
    with torch.no_grad():
        got = model.encode_decode(img, [dict(img_shape=(42, 56), pad_shape=(42, 56))])
    tokens, (h, w) = ref.forward(vit, img, TINY, upto=2)
    f = tokens[2][:, 1:].reshape(1, h, w, 64).permute(0, 3, 1, 2)
    bn = (f - heads['decode_head.norm.running_mean'][:, None, None]) / torch.sqrt(
        heads['decode_head.norm.running_var'][:, None, None] + 1e-5)
    bn = bn * heads['decode_head.norm.weight'][:, None, None] + heads['decode_head.norm.bias'][:, None, None]
    logits = torch.einsum('bchw,kc->bkhw', bn, heads['decode_head.conv_seg.weight'][:, :, 0, 0]) + \
        heads['decode_head.conv_seg.bias'][:, None, None]
    exp = torch.nn.functional.interpolate(logits, size=(42, 56), mode='bilinear', align_corners=False)
    assert ((got - exp).abs().max() / exp.abs().max()) < 1e-5


def test_format_c_upernet_release_pyramid_and_strictness(tmp_path):
    import perception  # noqa: F401
    from perception.segmentation import load_segmentor_checkpoint
    from mmseg.registry import MODELS
    init_default_scope('mmseg')
    vit, heads = _released_c(tmp_path, 'upernet')
    cfg = Config.fromfile(DEMO_UPERNET)
    cfg.model.backbone.update(arch=TINY, out_indices=(0, 1, 2, 3), frozen=True,
                              init_cfg=dict(type='Pretrained', checkpoint=str(tmp_path / 'vit.pth')))
    cfg.model.neck.in_channels = 64
    cfg.model.decode_head.update(in_channels=[64] * 4, num_classes=5, norm_cfg=dict(type='BN'))
    cfg.model.auxiliary_head.update(in_channels=64, num_classes=5, norm_cfg=dict(type='BN'))
    model = MODELS.build(cfg.model)
    # a release holding the heads too: add the model's own head tensors under the released names
    full = dict(heads)
    full.update({k: v.clone() for k, v in model.state_dict().items() if k.startswith(('decode_head.', 'auxiliary_head.'))})
    torch.save({'state_dict': full}, tmp_path / 'release_full.pth')
    load_segmentor_checkpoint(model, str(tmp_path / 'release_full.pth'))
    model.eval()
    img = torch.randn(1, 3, 56, 42)
    with torch.no_grad():
        outs = model.neck(model.backbone(img))
    tokens, (h, w) = ref.forward(vit, img, TINY)
    feats = [tokens[i][:, 1:].reshape(1, h, w, 64).permute(0, 3, 1, 2) for i in range(4)]
    exp = _pyramid_ref(heads, 'backbone.', feats)
    for o, e in zip(outs, exp):
        assert o.shape == e.shape and ((o - e).abs().max() / e.abs().max()) < 1e-5
    # strict: the head-less release does not fit a model with heads, and the error lists the keys
    with pytest.raises(CheckpointError, match='missing keys: auxiliary_head'):
        load_segmentor_checkpoint(model, str(tmp_path / 'release.pth'))
    torch.save({'state_dict': dict(full, **{'decode_head.extra.weight': torch.zeros(1)})}, tmp_path / 'bad.pth')
    with pytest.raises(CheckpointError, match='unexpected keys: decode_head.extra.weight'):
        load_segmentor_checkpoint(model, str(tmp_path / 'bad.pth'))


# ----------------------------------------------------------------------------- data
def test_few_shot_subset_is_deterministic_and_sized(demo_data, tmp_path):
    import perception  # noqa: F401
    from perception.datasets.segmentation import DemoShapesDataset, few_shot_subset
    items = list(range(20210))
    a, b = few_shot_subset(items, 16, seed=0), few_shot_subset(items, 16, seed=0)
    assert a == b and len(a) == 20210 // 16 and len(set(a)) == len(a)
    assert few_shot_subset(items, 16, seed=1) != a
    ds = DemoShapesDataset(data_root=demo_data, few_shot_divisor=4, few_shot_seed=0, pipeline=[],
                           data_prefix=dict(img_path='images/training', seg_map_path='annotations/training'))
    assert len(ds) == 12 // 4 and len(ds.subset_files) == 3
    # the hook writes the list into the work dir of a few-shot run
    wd = str(tmp_path / 'fs')
    train(DEMO_LINEAR, work_dir=wd, cfg_options=_opts(demo_data, iters=1, **{
        'train_dataloader.dataset.few_shot_divisor': 4,
        'custom_hooks': [dict(type='FewShotSubsetHook')]}))
    listed = open(osp.join(wd, 'few_shot_subset.txt')).read().split('\n')
    assert listed[0].startswith('# divisor 4') and len([x for x in listed[1:] if x]) == 3


def test_missing_data_folder_is_named(tmp_path):
    import perception  # noqa: F401
    from perception.datasets.segmentation import DemoShapesDataset
    with pytest.raises(FileNotFoundError, match='image folder not found: .*nowhere/images/training'):
        DemoShapesDataset(data_root=str(tmp_path / 'nowhere'), pipeline=[],
                          data_prefix=dict(img_path='images/training', seg_map_path='annotations/training'))


def test_bad_annotations_are_named(tmp_path):
    import cv2
    import perception  # noqa: F401
    from perception.datasets.segmentation import DemoShapesDataset
    root = make_demo_dataset(tmp_path / 'd', seed=2, num_train=3, num_val=1)
    ann = sorted(glob.glob(str(root / 'annotations/training/*.png')))
    cv2.imwrite(ann[0], np.zeros((50, 60), np.uint8))           # wrong size
    cv2.imwrite(ann[1], np.full((112, 112), 9, np.uint8))        # label 9 -> 8 after reduce_zero_label: >= 6
    pipeline = [dict(type='LoadImageFromFile'), dict(type='LoadAnnotations', reduce_zero_label=True),
                dict(type='CheckSegMap', num_classes=6)]
    init_default_scope('mmseg')
    ds = DemoShapesDataset(data_root=str(root), pipeline=pipeline,
                           data_prefix=dict(img_path='images/training', seg_map_path='annotations/training'))
    with pytest.raises(ValueError, match=f'annotation {ann[0]} is 60x50 but its image'):
        ds[0]
    with pytest.raises(ValueError, match=f'annotation {ann[1]} has label values \\[8\\]'):
        ds[1]
    os.remove(ann[2])
    with pytest.raises(FileNotFoundError, match='annotation missing for image'):
        DemoShapesDataset(data_root=str(root), pipeline=pipeline,
                          data_prefix=dict(img_path='images/training', seg_map_path='annotations/training'))


@pytest.mark.slow
def test_infer_skips_corrupt_image_by_name(demo_data, tmp_path):
    wd = str(tmp_path / 'w')
    train(DEMO_LINEAR, work_dir=wd, cfg_options=_opts(demo_data, iters=1))
    imgs = tmp_path / 'imgs'
    imgs.mkdir()
    good = sorted(glob.glob(osp.join(demo_data, 'images/validation/*.jpg')))[0]
    (imgs / 'good.jpg').write_bytes(open(good, 'rb').read())
    (imgs / 'broken.jpg').write_bytes(b'\xff\xd8\xff\xe0 not really a jpeg')
    out = subprocess.run([sys.executable, str(ROOT / 'tools/infer.py'), DEMO_LINEAR, osp.join(wd, 'iter_1.pth'),
                          str(imgs), '--out', str(tmp_path / 'out'), '--slide', '56', '42'],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert 'broken.jpg' in out.stdout + out.stderr
    label = __import__('cv2').imread(str(tmp_path / 'out/good_label.png'), 0)
    assert label.shape == (112, 112) and label.max() < 6
    assert (tmp_path / 'out/good_overlay.jpg').is_file() and not (tmp_path / 'out/broken_label.png').exists()


@pytest.mark.slow
def test_demo_pipeline_writes_overlays_and_curve(demo_data, tmp_path):
    from perception.demo import DEMO_CONFIG, run_segmentation_demo
    res = run_segmentation_demo(str(ROOT / DEMO_CONFIG), work_dir=str(tmp_path / 'demo'), data_root=demo_data,
                                seed=1, num_overlays=2, cfg_options=_opts(demo_data, iters=2))
    assert 0 <= res['metrics']['mIoU'] <= 100
    assert sorted(os.listdir(res['overlays'])) == ['.perception-outputs.json', 'demo_v00000_label.png',
                                                   'demo_v00000_overlay.jpg', 'demo_v00001_label.png',
                                                   'demo_v00001_overlay.jpg']
    assert open(res['curve'], 'rb').read(4) == b'\x89PNG'


def test_segmentor_init_cfg_pretrained_loads_release_strictly(tmp_path):
    """init_cfg Pretrained on the whole segmentor: the frozen release's heads + the ViT from format A."""
    import perception  # noqa: F401
    from mmseg.registry import MODELS
    init_default_scope('mmseg')
    vit, heads = _released_c(tmp_path, 'linear')

    def build(ckpt):
        return MODELS.build(dict(
            type='EncoderDecoder', data_preprocessor=dict(type='SegDataPreProcessor'),
            init_cfg=dict(type='Pretrained', checkpoint=str(ckpt)),
            backbone=dict(type='InternViT', arch=TINY, out_indices=(2, ), frozen=True,
                          init_cfg=dict(type='Pretrained', checkpoint=str(tmp_path / 'vit.pth'))),
            decode_head=dict(type='LinearProbeHead', in_channels=64, channels=64, in_index=0, dropout_ratio=0.0,
                             num_classes=5, norm_cfg=dict(type='BN'), align_corners=False),
            test_cfg=dict(mode='whole')))
    model = build(tmp_path / 'release.pth')
    model.init_weights()
    sd = model.state_dict()
    assert torch.equal(sd['decode_head.conv_seg.weight'], heads['decode_head.conv_seg.weight'])
    assert torch.equal(sd['backbone.blocks.1.mlp.fc1.weight'], vit['blocks.1.mlp.fc1.weight'])
    torch.save({'state_dict': dict(heads, **{'decode_head.stray': torch.zeros(1)})}, tmp_path / 'stray.pth')
    with pytest.raises(CheckpointError, match='unexpected keys: decode_head.stray'):
        build(tmp_path / 'stray.pth').init_weights()


def test_bf16_only_where_the_cpu_computes_it(monkeypatch, tmp_path, demo_data):
    """Without native bf16 (AVX2-only CPUs), bf16 autocast is emulated and many times slower: the demo
    trains in fp32 and says so; an explicit choice wins; training with --amp warns and suggests --fp32."""
    import logging

    from mmengine.logging import MMLogger

    from perception import demo
    from perception.engine import optim_wrapper
    logger = MMLogger.get_instance('perception-test-bf16')
    messages = []
    monkeypatch.setattr(logger, 'info', messages.append)
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    monkeypatch.setattr(optim_wrapper, 'cpu_has_native_bf16', lambda: False)
    assert demo.demo_precision_is_fp32(None, logger) is True
    assert messages and 'no native bf16' in messages[0] and 'fp32' in messages[0]
    assert demo.demo_precision_is_fp32(False, logger) is False and demo.demo_precision_is_fp32(True, logger) is True
    monkeypatch.setattr(optim_wrapper, 'cpu_has_native_bf16', lambda: True)
    assert demo.demo_precision_is_fp32(None, logger) is False

    monkeypatch.setattr(optim_wrapper, 'cpu_has_native_bf16', lambda: False)
    warned = []
    handler = logging.Handler()
    handler.emit = lambda rec: warned.append(rec.getMessage())
    current = MMLogger.get_current_instance()
    current.addHandler(handler)
    try:
        cfg = prepare_config(DEMO_UPERNET, str(tmp_path), amp=True, cfg_options=_opts(demo_data))
    finally:
        current.removeHandler(handler)
    assert cfg.optim_wrapper.type == 'BF16OptimWrapper'  # the user's choice is kept, and announced
    assert any('no native bf16' in m and '--fp32' in m for m in warned), warned


def test_layer_decay_depth_comes_from_the_model():
    """The configs do not restate the backbone's depth for the layer-decay constructor: it reads
    model.backbone.num_layers (48 for the 6B, 45 for the 448px releases, 24 for the 300M)."""
    from perception.engine.layer_decay import InternViTLayerDecayOptimWrapperConstructor
    configs = sorted(glob.glob(str(ROOT / 'mmcfg/internvit/*.py'))) + sorted(glob.glob(str(ROOT / 'mmcfg/scale/*fsdp*.py')))
    for f in configs:
        pc = Config.fromfile(f).optim_wrapper.get('paramwise_cfg') or {}
        assert 'num_layers' not in pc, f
    import perception  # noqa: F401
    from mmseg.registry import MODELS
    init_default_scope('mmseg')
    cfg = _cfg('upernet_internvit-300m_8xb2-80k_ade20k-504x504.py')
    with torch.device('meta'):
        model = MODELS.build(cfg.model)
    groups = []
    InternViTLayerDecayOptimWrapperConstructor(cfg.optim_wrapper.to_dict(), cfg.optim_wrapper.paramwise_cfg.to_dict())\
        .add_params(groups, model)
    rate = cfg.optim_wrapper.paramwise_cfg.layer_decay_rate
    assert {g['layer_id'] for g in groups} == set(range(0, 24 + 2))
    assert min(g['lr_scale'] for g in groups) == pytest.approx(rate ** 25)


def test_auto_scale_lr_scales_to_the_run_batch(demo_data, tmp_path):
    """--auto-scale-lr: lr x (batch x accumulation) / base_batch_size (the demo's lr is for batch 8);
    off, the lr is the config's at any batch; a config without a base is refused."""
    from perception.config import ConfigError

    from perception.config import build_runner

    def head_lr(bs, scale, accum=1):
        """The lr mmengine's Runner gives the head (no layer decay) when it builds the optimizer for
        training: ``build_optim_wrapper`` then ``scale_lr``, as ``Runner.train`` does."""
        opts = dict(_opts(demo_data), **{'train_dataloader.batch_size': bs,
                                         'optim_wrapper.accumulative_counts': accum})
        cfg = prepare_config(DEMO_LINEAR, str(tmp_path / f'{bs}_{scale}_{accum}'), fp32=True, cfg_options=opts,
                             auto_scale_lr=scale)
        runner = build_runner(cfg)
        wrapper = runner.build_optim_wrapper(runner.optim_wrapper)
        runner.scale_lr(wrapper, runner.auto_scale_lr)
        return max(g['lr'] for g in wrapper.optimizer.param_groups)
    assert head_lr(2, False) == head_lr(4, False) == pytest.approx(1e-3)
    assert head_lr(2, True) == pytest.approx(1e-3 * 2 / 8)
    assert head_lr(4, True) == pytest.approx(1e-3 * 4 / 8)
    assert head_lr(2, True, accum=2) == pytest.approx(1e-3 * 4 / 8)  # the effective batch counts
    with pytest.raises(ConfigError, match='--auto-scale-lr needs auto_scale_lr = dict\\(base_batch_size=N\\)'):
        prepare_config(DEMO_LINEAR, str(tmp_path), cfg_options={'auto_scale_lr': None}, auto_scale_lr=True)


@pytest.mark.slow
def test_random_init_runs_a_shipped_config_without_its_weights(demo_data, tmp_path):
    """--random-init (train, test, infer, export): every Pretrained init_cfg of a shipped config is
    dropped and named in the log; the real-size 300M linear probe then segments an image."""
    from perception.config import strip_pretrained
    from perception.inference import init_segmentor, segment
    for path in sorted((ROOT / 'mmcfg' / 'internvit').glob('*.py')):
        cfg = Config.fromfile(str(path))
        dropped = strip_pretrained(cfg.model)  # each shipped ADE20K config loads released weights
        assert dropped and dropped[0].startswith('model.backbone.init_cfg: checkpoints/'), (path.name, dropped)
        assert 'Pretrained' not in str(cfg.model), path.name
    cfg300 = str(ROOT / 'mmcfg/internvit/linear_internvit-300m-frozen_8xb2-80k_ade20k-504x504.py')
    with pytest.raises(CheckpointError):  # without the flag the released weights are required
        init_segmentor(cfg300)
    model = init_segmentor(cfg300, random_init=True)
    assert sum(p.numel() for p in model.backbone.parameters()) > 300e6
    import cv2
    img = cv2.imread(sorted(glob.glob(osp.join(demo_data, 'images', 'validation', '*.jpg')))[0])
    label, _ = segment(model, img)
    assert label.shape == img.shape[:2] and int(label.max()) < 150
    with pytest.raises(ValueError, match='not both'):
        init_segmentor(cfg300, 'x.pth', random_init=True)


def test_tta_views_for_the_ade20k_configs():
    from perception.segmentation.tta import enable_tta
    cfg = Config.fromfile(str(ROOT / 'mmcfg/internvit/upernet_internvit-6b-frozen_8xb2-80k_ade20k-504x504.py'))
    enable_tta(cfg)
    aug = cfg.test_dataloader.dataset.pipeline[-1]
    assert aug['type'] == 'TestTimeAug' and cfg.model.type == 'SegTTAModel'
    assert [t['short_side'] for t in aug['transforms'][0]] == [252, 378, 504, 630, 756, 882]  # x14, 0.5-1.75
    assert [t['prob'] for t in aug['transforms'][1]] == [0.0, 1.0]
    assert [t[0]['type'] for t in aug['transforms'][2:]] == ['LoadAnnotations', 'CheckSegMap', 'PackSegInputs']
    assert cfg.model.module.test_cfg.mode == 'slide'  # every view slides as the single-scale test does


@pytest.mark.slow
def test_tta_runs_on_the_demo_data_and_changes_the_prediction(demo_data, tmp_path):
    """The linear head (TTA wraps any segmentor the same way; the UperNet takes 3x longer here)."""
    opts = _opts(demo_data, iters=12, **{'optim_wrapper.optimizer.lr': 1e-2})  # enough to leave the prior
    train(DEMO_LINEAR, work_dir=str(tmp_path / 'w'), fp32=True, cfg_options=opts)
    ckpt = str(tmp_path / 'w' / 'iter_12.pth')
    plain = evaluate(DEMO_LINEAR, ckpt, work_dir=str(tmp_path / 't1'), cfg_options=opts, out=str(tmp_path / 'p'))
    tta = evaluate(DEMO_LINEAR, ckpt, work_dir=str(tmp_path / 't2'), cfg_options=opts, out=str(tmp_path / 'a'),
                   tta=True)
    assert set(plain) == set(tta) and 'mIoU' in tta
    import cv2
    names = sorted(n for n in os.listdir(tmp_path / 'p') if n.endswith('.png'))  # not the record beside them
    assert names and names == sorted(n for n in os.listdir(tmp_path / 'a') if n.endswith('.png'))
    changed, seen = 0, set()
    for n in names:
        a, b = cv2.imread(str(tmp_path / 'p' / n), -1), cv2.imread(str(tmp_path / 'a' / n), -1)
        assert a.shape == b.shape  # predictions back at the image size
        changed += int((a != b).sum())
        seen.update(np.unique(a).tolist())
    assert len(seen) > 1  # a model that predicts something
    assert changed > 0


def _seg_batch(n, seed):
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample
    g = torch.Generator().manual_seed(seed)
    imgs, samples = [], []
    for _ in range(n):
        imgs.append(torch.randint(0, 256, (3, 112, 112), dtype=torch.uint8, generator=g))
        s = SegDataSample()
        s.gt_sem_seg = PixelData(data=torch.randint(0, 6, (1, 112, 112), generator=g))
        s.set_metainfo(dict(img_shape=(112, 112), ori_shape=(112, 112), pad_shape=(112, 112)))
        samples.append(s)
    return imgs, samples


def test_gradient_accumulation_equals_the_large_batch_step():
    """The one-GPU configs keep batch 16 as 2 x 8 accumulated steps: one optimizer update over k
    micro-batches equals the update over one batch of them all (mmengine's OptimWrapper divides each
    loss by k; the losses are per-pixel means over equal-size batches). BatchNorm is put in eval mode:
    its batch statistics are per micro-batch (the reference's SyncBN saw 16 images), the one
    difference accumulation cannot remove (dropout, random per pass, is off). Without accumulation the
    result differs."""
    import copy

    import perception  # noqa: F401
    from mmengine.optim import build_optim_wrapper
    from mmseg.registry import MODELS
    init_default_scope('mmseg')
    cfg = Config.fromfile(DEMO_UPERNET)
    cfg.model.backbone.frozen = True
    for h in ('decode_head', 'auxiliary_head'):
        cfg.model[h].norm_cfg = dict(type='BN', requires_grad=True)
        cfg.model[h].dropout_ratio = 0.0  # random by nature: no two runs see the same mask
    torch.manual_seed(0)
    base = MODELS.build(cfg.model)
    base.init_weights()
    imgs, samples = _seg_batch(4, seed=1)

    def run(k, chunks):
        model = copy.deepcopy(base).train()
        for m in model.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.eval()
        ow = build_optim_wrapper(model, dict(type='OptimWrapper', accumulative_counts=k,
                                             optimizer=dict(type='SGD', lr=0.5)))
        for i in range(0, 4, 4 // chunks):
            j = i + 4 // chunks
            model.train_step(dict(inputs=imgs[i:j], data_samples=samples[i:j]), ow)
        return {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    big, accumulated, unaccumulated = run(1, 1), run(2, 2), run(1, 2)
    start = {n: p for n, p in base.named_parameters() if p.requires_grad}
    moved = max(float((big[n] - start[n]).abs().max()) for n in big)
    assert moved > 1e-3
    for n in big:
        assert torch.allclose(big[n], accumulated[n], atol=1e-6 * max(1.0, moved), rtol=1e-5), n
    assert max(float((big[n] - unaccumulated[n]).abs().max()) for n in big) > 100 * 1e-6 * max(1.0, moved)


@pytest.mark.slow
def test_schedules_count_optimizer_steps_under_accumulation(demo_data, tmp_path):
    """AccumulationSchedulerHook: 8 iterations with accumulative_counts=4 are 2 optimizer steps, and
    the schedules advance 2 steps (the stock hook would advance 8)."""
    opts = _opts(demo_data, iters=8, **{'optim_wrapper.accumulative_counts': 4,
                                        'default_hooks.param_scheduler': dict(type='AccumulationSchedulerHook'),
                                        'param_scheduler': [dict(type='LinearLR', start_factor=0.1, by_epoch=False,
                                                                 begin=0, end=4)]})
    runner = train(DEMO_LINEAR, work_dir=str(tmp_path / 'w'), fp32=True, cfg_options=opts)
    assert runner.iter == 8
    assert [s.last_step for s in runner.param_schedulers] == [2]
    lr = max(g['lr'] for g in runner.optim_wrapper.optimizer.param_groups)
    assert lr == pytest.approx(max(g['initial_lr'] for g in runner.optim_wrapper.optimizer.param_groups) *
                               (0.1 + 0.9 * 2 / 3))  # mmengine: LinearLR reaches 1 at step end - 1
