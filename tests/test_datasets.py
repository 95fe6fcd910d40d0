"""COCO-Stuff-164k, Pascal Context-59 and Cityscapes: tiny generated fixtures in each released
layout load through the shipped configs' loaders, train one iteration and validate (a tiny backbone
in place of the 6B / 300M), and a missing annotation is named."""
from pathlib import Path

import cv2
import numpy as np
import pytest
from mmengine.config import Config

from perception.apis import train

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = {
    'coco-stuff164k': 'linear_internvit-300m-frozen_8xb2-80k_coco-stuff164k-504x504.py',
    'pascal-context-59': 'linear_internvit-300m-frozen_8xb2-80k_pascal-context-59-476x476.py',
    'cityscapes': 'linear_internvit-300m-frozen_8xb2-80k_cityscapes-504x1008.py',
}
CLASSES = {'coco-stuff164k': 171, 'pascal-context-59': 59, 'cityscapes': 19}
TINY = dict(embed_dims=64, num_layers=2, num_heads=2, feedforward_channels=128, norm_type='rms_norm',
            qk_normalization=True, qkv_bias=False, patch_size=14, img_size=224)


def _pair(img_path: Path, ann_path: Path, rng, n_labels: int, h=48, w=64):
    img_path.parent.mkdir(parents=True, exist_ok=True)
    ann_path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(img_path), rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
    cv2.imwrite(str(ann_path), rng.integers(0, n_labels, (h, w), dtype=np.uint8))


def make_layout(name: str, root: Path, seed: int = 0) -> Path:
    """A few image / label pairs in the released layout of ``name``."""
    rng = np.random.default_rng(seed)
    if name == 'coco-stuff164k':
        for split, n in (('train2017', 3), ('val2017', 2)):
            for i in range(n):
                stem = f'{i:012d}'
                _pair(root / 'images' / split / f'{stem}.jpg', root / 'annotations' / split / f'{stem}_labelTrainIds.png',
                      rng, 171)
    elif name == 'pascal-context-59':
        lists = root / 'ImageSets' / 'SegmentationContext'
        lists.mkdir(parents=True)
        for split, n in (('train', 3), ('val', 2)):
            stems = [f'2008_{split}{i:04d}' for i in range(n)]
            for s in stems:  # 0 = background (reduced to 255), 1..59 the classes
                _pair(root / 'JPEGImages' / f'{s}.jpg', root / 'SegmentationClassContext' / f'{s}.png', rng, 60)
            (lists / f'{split}.txt').write_text('\n'.join(stems) + '\n')
    elif name == 'cityscapes':
        for split, n in (('train', 3), ('val', 2)):
            for i in range(n):
                stem = f'aachen_{i:06d}_000019'
                _pair(root / 'leftImg8bit' / split / 'aachen' / f'{stem}_leftImg8bit.png',
                      root / 'gtFine' / split / 'aachen' / f'{stem}_gtFine_labelTrainIds.png', rng, 19)
    return root


def _options(root):
    opts = {f'{s}_dataloader.dataset.data_root': str(root) for s in ('train', 'val', 'test')}
    opts.update({f'{s}_dataloader.num_workers': 0 for s in ('train', 'val', 'test')})
    opts.update({f'{s}_dataloader.persistent_workers': False for s in ('train', 'val', 'test')})
    return opts


@pytest.mark.slow
@pytest.mark.parametrize('name', sorted(CONFIGS))
def test_dataset_layouts_load_and_train_one_iteration(name, tmp_path):
    root = make_layout(name, tmp_path / name)
    cfg_path = str(ROOT / 'mmcfg' / 'internvit' / CONFIGS[name])
    cfg = Config.fromfile(cfg_path)
    assert cfg.model.decode_head.num_classes == CLASSES[name]
    crop = cfg.crop_size
    assert crop[0] % 14 == 0 and crop[1] % 14 == 0 and tuple(cfg.model.test_cfg.crop_size) == tuple(crop)
    opts = dict(_options(root), **{
        'model.backbone.arch': dict(TINY, _delete_=True), 'model.backbone.out_indices': (1,),
        'model.decode_head.in_channels': 64, 'model.decode_head.channels': 64,
        'train_dataloader.batch_size': 2, 'train_cfg.max_iters': 1, 'train_cfg.val_interval': 1,
        'default_hooks.checkpoint.interval': 1, 'default_hooks.logger.interval': 1})
    runner = train(cfg_path, work_dir=str(tmp_path / 'w'), fp32=True, cfg_options=opts, random_init=True)
    assert runner.iter == 1
    assert len(runner.train_dataloader.dataset) == 3 and len(runner.val_dataloader.dataset) == 2
    assert len(runner.val_dataloader.dataset.metainfo['classes']) == CLASSES[name]
    assert (tmp_path / 'w' / 'iter_1.pth').is_file()


@pytest.mark.parametrize('name', sorted(CONFIGS))
def test_a_missing_annotation_is_named(name, tmp_path):
    from mmengine.registry import init_default_scope
    from mmseg.registry import DATASETS

    from perception.setup_env import register_all_modules
    register_all_modules()
    init_default_scope('mmseg')
    root = make_layout(name, tmp_path / name)
    victim = sorted(p for p in root.rglob('*.png') if 'label' in p.name or 'SegmentationClass' in str(p))[0]
    victim.unlink()
    cfg = Config.fromfile(str(ROOT / 'mmcfg' / 'internvit' / CONFIGS[name]))
    cfg.merge_from_dict(_options(root))
    with pytest.raises(FileNotFoundError, match=f'annotation missing for image .*: expected {victim}'):
        for split in ('train', 'val'):
            DATASETS.build(cfg[f'{split}_dataloader'].dataset)
