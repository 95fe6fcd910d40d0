"""Segment images with a trained segmentor: label PNGs and colour overlays."""
import copy
import os
import os.path as osp
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Union

import numpy as np
from mmengine.logging import print_log

IMG_EXTS = ('.jpg', '.jpeg', '.png', '.bmp', '.tif', '.tiff', '.webp')


def list_images(inputs: Union[str, Sequence[str]]) -> List[str]:
    if isinstance(inputs, (list, tuple)):
        out = []
        for i in inputs:
            out += list_images(i)
        return out
    p = Path(inputs)
    if p.is_dir():
        return sorted(str(f) for f in p.rglob('*') if f.suffix.lower() in IMG_EXTS)
    if not p.exists():
        raise FileNotFoundError(f'input not found: {inputs}')
    return [str(p)]


def init_segmentor(config, checkpoint: Optional[str] = None, device: str = 'cpu', cfg_options=None,
                   slide: Optional[Sequence[int]] = None):
    """Build a segmentor from a config and load a checkpoint strictly (any format this project reads)."""
    from .setup_env import register_all_modules
    register_all_modules()  # configs without custom_imports build too
    from mmengine.config import Config
    from mmengine.registry import init_default_scope
    from mmseg.registry import MODELS

    from .apis import _replace_syncbn
    from .segmentation.checkpoint import load_segmentor_checkpoint
    cfg = config if isinstance(config, Config) else Config.fromfile(config)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    init_default_scope(cfg.get('default_scope', 'mmseg'))
    _replace_syncbn(cfg.model)
    cfg.model.train_cfg = None
    if slide:
        crop, stride = int(slide[0]), int(slide[1])
        cfg.model.test_cfg = dict(mode='slide', crop_size=(crop, crop), stride=(stride, stride))
    model = MODELS.build(cfg.model)
    if checkpoint:
        load_segmentor_checkpoint(model, checkpoint)
    else:
        model.init_weights()
    model.cfg = cfg
    dataset_meta = None
    try:
        from mmseg.registry import DATASETS
        ds_type = cfg.test_dataloader.dataset.type
        cls = DATASETS.get(ds_type)
        dataset_meta = dict(cls.METAINFO) if cls is not None else None
    except Exception:
        pass
    model.dataset_meta = dataset_meta or {'classes': [str(i) for i in range(model.decode_head.num_classes)],
                                          'palette': None}
    return model.to(device).eval()


def _pipeline(cfg):
    from mmcv.transforms import Compose
    steps = [copy.deepcopy(t) for t in cfg.test_pipeline
             if t['type'] not in ('LoadAnnotations', 'CheckSegMap')]
    steps[0] = dict(type='LoadImageFromNDArray')
    return Compose(steps)


def read_image(path: str) -> np.ndarray:
    import cv2
    img = cv2.imread(path, cv2.IMREAD_COLOR)
    if img is None:
        raise ValueError(f'cannot read image {path} (corrupt, truncated or not an image)')
    return img  # BGR, as mmseg's pipelines expect


def segment(model, img_bgr: np.ndarray):
    """Label map (H x W, uint8/int64) of one BGR image, and the SegDataSample."""
    import torch
    from mmengine.dataset import pseudo_collate
    data = _pipeline(model.cfg)(dict(img=img_bgr))
    with torch.no_grad():
        res = model.test_step(pseudo_collate([data]))[0]
    return res.pred_sem_seg.data[0].cpu().numpy(), res


def overlay(img_bgr: np.ndarray, label: np.ndarray, palette, alpha: float = 0.5,
            side_by_side: bool = True) -> np.ndarray:
    """The image blended with the class colours (next to the plain image when ``side_by_side``)."""
    pal = np.asarray(palette, np.uint8) if palette is not None else \
        np.random.RandomState(0).randint(0, 255, (256, 3)).astype(np.uint8)
    color = pal[np.clip(label, 0, len(pal) - 1)][..., ::-1]  # RGB palette -> BGR
    blend = (img_bgr * (1 - alpha) + color * alpha).astype(np.uint8)
    return np.concatenate([img_bgr, blend], axis=1) if side_by_side else blend


def segment_images(model, inputs, out_dir: str, alpha: float = 0.5, progress: bool = True) -> Dict:
    """Writes ``<name>_label.png`` and ``<name>_overlay.jpg`` per image; unreadable images are reported
    by name and skipped. Returns ``{'written': [...], 'failed': {path: reason}}``."""
    import cv2

    from .checkpoint.io import atomic_write
    files = list_images(inputs)
    os.makedirs(out_dir, exist_ok=True)
    palette = (model.dataset_meta or {}).get('palette')
    written, failed = [], {}
    it = files
    if progress and len(files) > 1:
        from tqdm import tqdm
        it = tqdm(files, desc='segmenting', unit='img')
    for f in it:
        try:
            img = read_image(f)
        except ValueError as e:
            failed[f] = str(e)
            print_log(f'skipped {f}: {e}', logger='current', level=30)
            continue
        label, _ = segment(model, img)
        stem = osp.splitext(osp.basename(f))[0]
        for suffix, arr in (('_label.png', label.astype(np.uint8)), ('_overlay.jpg', overlay(img, label, palette, alpha))):
            out = osp.join(out_dir, stem + suffix)
            with atomic_write(out) as tmp:
                ok, buf = cv2.imencode(osp.splitext(out)[1], arr)
                tmp.write_bytes(buf.tobytes())
            written.append(out)
    print_log(f'segmented {len(files) - len(failed)} of {len(files)} images into {out_dir}'
              + (f'; {len(failed)} unreadable: ' + ', '.join(map(osp.basename, failed)) if failed else ''),
              logger='current')
    return {'written': written, 'failed': failed}
