"""ImageNet linear probing: probes, format D, variant metrics, head EMA, cached-feature sweep."""
import glob
import json
import os.path as osp
from pathlib import Path

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope

from benchmarks import reference as ref
from conftest import TINY, randomize_
from perception.apis import evaluate, train
from perception.checkpoint import CheckpointError
from perception.classification.fast_probe import CacheMismatchError, extract_features, run_linear_probe
from perception.classification.metrics import ReaLAccuracy, SubsetAccuracy, subset_indices
from perception.datasets.demo_cls_data import make_cls_demo_dataset

ROOT = Path(__file__).resolve().parents[1]
DEMO_CLS = str(ROOT / 'mmcfg/classification/internvit-tiny_linear-probe_1xb64-10e_demo-shapes-cls-112px.py')


@pytest.fixture(scope='module')
def cls_data(tmp_path_factory):
    return str(make_cls_demo_dataset(tmp_path_factory.mktemp('cls') / 'shapes_cls', seed=3, train_per_class=8,
                                     val_per_class=4))


def _cfg(data_root, **extra):
    cfg = Config.fromfile(DEMO_CLS)
    opts = {'train_dataloader.dataset.data_root': data_root, 'val_dataloader.dataset.data_root': data_root,
            'test_dataloader.dataset.data_root': data_root,
            'model.backbone.init_cfg.checkpoint': osp.join(data_root, 'tiny_backbone.safetensors'),
            'train_dataloader.num_workers': 0, 'train_dataloader.persistent_workers': False,
            'val_dataloader.num_workers': 0, 'val_dataloader.persistent_workers': False,
            'test_dataloader.num_workers': 0, 'test_dataloader.persistent_workers': False}
    opts.update(extra)
    cfg.merge_from_dict(opts)
    return cfg


def _build(model_cfg):
    import perception  # noqa: F401
    from mmpretrain.registry import MODELS
    init_default_scope('mmpretrain')
    return MODELS.build(model_cfg)


def test_probe_shapes_and_frozen_backbone():
    for neck, width in ((dict(type='ClsPatchConcat'), 128), (dict(type='AttentionPoolingNeck', embed_dims=64,
                                                                   num_heads=4), 64)):
        m = _build(dict(type='ImageClassifier',
                        backbone=dict(type='InternViT', arch=TINY, output_cls_token=True, frozen=True),
                        neck=neck, head=dict(type='BNLinearClsHead', num_classes=7, in_channels=width)))
        m.init_weights()
        m.train()
        assert not m.backbone.training and not any(p.requires_grad for p in m.backbone.parameters())
        feats = m.extract_feat(torch.randn(3, 3, 56, 42))
        assert feats[0].shape == (3, width)
        assert m(torch.randn(3, 3, 56, 42)).shape == (3, 7)
        assert all(p.requires_grad for p in m.head.parameters())


def test_probe_needs_cls_token():
    m = _build(dict(type='ImageClassifier', backbone=dict(type='InternViT', arch=TINY, frozen=True),
                    neck=dict(type='ClsPatchConcat'), head=dict(type='BNLinearClsHead', num_classes=3, in_channels=128)))
    with pytest.raises(ValueError, match='output_cls_token=True'):
        m.extract_feat(torch.randn(1, 3, 28, 28))


def test_format_d_head_reproduces_independent_forward(tmp_path):
    """intern_vit_6b_224px_head.pth layout: checkpoint['model'] = {norm.* (BN over 2C), head.* (Linear)}."""
    vit = randomize_(__import__('perception').models.InternViT(TINY), seed=31).state_dict()
    torch.save({'module': vit}, tmp_path / 'vit.pth')
    g = torch.Generator().manual_seed(5)
    D, K = 128, 10
    head = {'norm.weight': 1 + 0.2 * torch.randn(D, generator=g), 'norm.bias': 0.2 * torch.randn(D, generator=g),
            'norm.running_mean': 0.3 * torch.randn(D, generator=g),
            'norm.running_var': 1 + torch.rand(D, generator=g), 'norm.num_batches_tracked': torch.tensor(7),
            'head.weight': 0.1 * torch.randn(K, D, generator=g), 'head.bias': 0.1 * torch.randn(K, generator=g)}
    torch.save({'model': head, 'epoch': 9}, tmp_path / 'intern_vit_head.pth')
    from perception.classification.checkpoint import load_classifier_checkpoint
    m = _build(dict(type='ImageClassifier',
                    backbone=dict(type='InternViT', arch=TINY, output_cls_token=True, frozen=True,
                                  init_cfg=dict(type='Pretrained', checkpoint=str(tmp_path / 'vit.pth'))),
                    neck=dict(type='ClsPatchConcat'), head=dict(type='BNLinearClsHead', num_classes=K, in_channels=D)))
    load_classifier_checkpoint(m, str(tmp_path / 'intern_vit_head.pth'))
    m.eval()
    img = torch.randn(2, 3, 56, 56)
    with torch.no_grad():
        got = m(img)
    tokens, _ = ref.forward(vit, img, TINY)
    last = tokens[-1]
    feat = torch.cat([last[:, 0], last[:, 1:].mean(1)], -1)
    bn = (feat - head['norm.running_mean']) / torch.sqrt(head['norm.running_var'] + 1e-6) * head['norm.weight'] + \
        head['norm.bias']
    exp = bn @ head['head.weight'].T + head['head.bias']
    assert ((got - exp).abs().max() / exp.abs().max()) < 1e-5
    torch.save({'model': dict(head, **{'head.weight': torch.zeros(K, D + 1)})}, tmp_path / 'bad.pth')
    with pytest.raises(CheckpointError, match='shape mismatch: head.fc.weight'):
        load_classifier_checkpoint(m, str(tmp_path / 'bad.pth'))


def test_imagenet_a_r_subsets_match_timm_index_files():
    import timm
    info = osp.join(osp.dirname(timm.__file__), 'data', '_info')
    for subset, f in (('imagenet-a', 'imagenet_a_indices.txt'), ('imagenet-r', 'imagenet_r_indices.txt')):
        expected = [int(x) for x in open(osp.join(info, f)).read().split()]
        assert subset_indices(subset) == expected and len(expected) == 200


def test_subset_accuracy_scores_only_the_subset():
    metric = SubsetAccuracy('imagenet-r', topk=(1, ))
    idx = subset_indices('imagenet-r')
    samples = []
    for label in (0, 5, 199):
        score = torch.zeros(1000)
        score[idx[label]] = 1.0
        outside = next(i for i in range(1000) if i not in set(idx))
        score[outside] = 5.0  # a class outside the 200 must not count
        samples.append({'pred_score': score, 'gt_label': torch.tensor([label])})
    metric.process(None, samples)
    assert metric.evaluate(3)['imagenet-r/top1'] == pytest.approx(100.0)


def test_real_accuracy(tmp_path):
    real = [[1, 2], [], [7]]
    (tmp_path / 'real.json').write_text(json.dumps(real))
    metric = ReaLAccuracy(real_json=str(tmp_path / 'real.json'))
    preds = [(1, 'ILSVRC2012_val_00000001.JPEG'), (3, 'ILSVRC2012_val_00000002.JPEG'), (6, 'ILSVRC2012_val_00000003.JPEG')]
    for p, name in preds:
        s = torch.zeros(1000)
        s[p] = 1
        metric.process(None, [{'pred_score': s, 'img_path': f'/x/{name}'}])
    assert metric.evaluate(3)['real/top1'] == pytest.approx(50.0)  # image 2 has no label


def test_classification_configs_build_on_meta():
    import perception  # noqa: F401
    from mmpretrain.registry import MODELS
    init_default_scope('mmpretrain')
    configs = sorted(glob.glob(str(ROOT / 'mmcfg/classification/*.py')))
    assert len(configs) == 9
    for f in configs:
        cfg = Config.fromfile(f)
        with torch.device('meta'):
            MODELS.build(cfg.model)
    main = Config.fromfile(str(ROOT / 'mmcfg/classification/internvit-6b_linear-probe_8xb128-10e_in1k-224px.py'))
    o = main.optim_wrapper.optimizer
    assert (o.type, o.lr, o.momentum, o.nesterov, o.weight_decay) == ('SGD', 0.2, 0.9, True, 0.0)
    assert main.optim_wrapper.clip_grad.max_norm == 5.0 and main.train_cfg.max_epochs == 10
    assert main.param_scheduler[0].end == 1 and main.param_scheduler[1].type == 'CosineAnnealingLR'
    assert main.model.head.in_channels == 6400 and main.model.head.bn_eps == 1e-6
    assert [a['type'] for a in main.model.train_cfg.augments] == ['Mixup', 'CutMix']
    assert main.custom_hooks[0] == dict(type='HeadEMAHook', momentum=0.002)


@pytest.mark.slow
def test_two_iterations_train_and_test_through_mmengine(cls_data, tmp_path):
    cfg = _cfg(cls_data, **{'train_cfg.max_epochs': 1, 'train_cfg.val_interval': 1, 'train_dataloader.batch_size': 24,
                            'default_hooks.checkpoint.interval': 1})
    runner = train(cfg, work_dir=str(tmp_path))
    assert runner.iter == 2  # 48 images / 24
    ckpt = torch.load(tmp_path / 'epoch_1.pth', weights_only=True, map_location='cpu')
    assert 'raw_trainable' in ckpt  # the EMA head is the saved state_dict, raw weights kept for resume
    raw = ckpt['raw_trainable']['head.fc.weight']
    assert not torch.equal(raw, ckpt['state_dict']['head.fc.weight'])
    metrics = evaluate(_cfg(cls_data), str(tmp_path / 'epoch_1.pth'), work_dir=str(tmp_path))
    assert 0 <= metrics['accuracy/top1'] <= 100


def test_feature_cache_resume_and_manifest(cls_data, tmp_path):
    cfg = _cfg(cls_data)
    cache_root = str(tmp_path / 'cache')
    extract_features(cfg, 'train', cache_root, n_last_blocks=2, batch_size=8, stop_after=16)
    m = json.load(open(osp.join(cache_root, 'train', 'manifest.json')))
    assert m['num_done'] == 16 and m['images']['count'] == 48
    partial = np.load(osp.join(cache_root, 'train', 'features.npy'))[:16].copy()
    extract_features(cfg, 'train', cache_root, n_last_blocks=2, batch_size=8)  # resumes at 16
    full = np.load(osp.join(cache_root, 'train', 'features.npy'))
    assert json.load(open(osp.join(cache_root, 'train', 'manifest.json')))['num_done'] == 48
    assert np.array_equal(full[:16], partial) and np.abs(full[16:]).sum() > 0
    # the same features as a fresh extraction in one go
    extract_features(cfg, 'train', str(tmp_path / 'fresh'), n_last_blocks=2, batch_size=8)
    assert np.allclose(np.load(str(tmp_path / 'fresh/train/features.npy')), full, atol=1e-3)
    # another transform or another checkpoint: refused, not reused
    cfg2 = _cfg(cls_data)
    cfg2.test_pipeline[1]['scale'] = 126
    with pytest.raises(CacheMismatchError, match='transform'):
        extract_features(cfg2, 'train', cache_root, n_last_blocks=2)
    other = tmp_path / 'other_backbone.safetensors'
    from perception.datasets.demo_cls_data import write_demo_backbone
    write_demo_backbone(other, seed=99)
    cfg3 = _cfg(cls_data, **{'model.backbone.init_cfg.checkpoint': str(other)})
    with pytest.raises(CacheMismatchError, match='checkpoint'):
        extract_features(cfg3, 'train', cache_root, n_last_blocks=2)


def test_corrupt_image_is_reported_by_name(cls_data, tmp_path, caplog):
    import shutil
    root = tmp_path / 'data'
    shutil.copytree(cls_data, root)
    bad = sorted(glob.glob(str(root / 'train' / 'c2_triangle' / '*.JPEG')))[0]
    Path(bad).write_bytes(b'not an image at all')
    cfg = _cfg(str(root))
    cache = extract_features(cfg, 'train', str(tmp_path / 'cache'), batch_size=8)
    m = cache.manifest()
    assert m['bad_images'] == [bad] and m['num_done'] == 48
    _, _, valid = cache.arrays()
    assert int(np.asarray(valid).sum()) == 47


@pytest.mark.slow
def test_sweep_beats_chance_and_head_loads_in_config(cls_data, tmp_path):
    cfg = _cfg(cls_data, **{'linear_probe.epochs': 60, 'linear_probe.batch_size': 16})
    out = run_linear_probe(cfg, str(tmp_path / 'sweep'))
    assert out['num_heads'] == 18
    best = out['results'][out['best']]['top1']
    assert best > 2 * 100 / 6, out['results']  # clearly above chance (16.7%)
    metrics = evaluate(_cfg(cls_data), out['config_checkpoint'], work_dir=str(tmp_path / 't'))
    assert metrics['accuracy/top1'] == pytest.approx(out['results'][out['config_head']]['top1'], abs=100 / 24 + 1e-6)
