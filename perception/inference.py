"""Segment images with a trained segmentor: label PNGs and colour overlays."""
import copy
import logging
from typing import Dict, Optional, Sequence

import numpy as np
from mmengine.logging import print_log

from .common.dtypes import LOW_PRECISION, torch_dtype
from .common.images import image_noted
from .deploy.io import segment_images as folder_loop
from .deploy.runtime import overlay as blend


def init_segmentor(config, checkpoint: Optional[str] = None, device: str = 'cpu', cfg_options=None,
                   slide: Optional[Sequence[int]] = None, weights_dtype: Optional[str] = None,
                   random_init: bool = False):
    """Build a segmentor from a config and load a checkpoint strictly (any format this project reads).
    No checkpoint: the config's own initialisation (its ``Pretrained`` backbone included);
    ``random_init=True``: without any pretrained weights (``--random-init``: smoke runs, memory, speed).

    ``weights_dtype='bf16'`` (or 'fp16'): the backbone is built on the ``meta`` device and materialised
    directly in that dtype, so a 6B segmentor never exists in fp32 (12.6 GB instead of 25 GB); the
    neck, heads and preprocessing stay fp32 (an ``InternViTAdapter``: its ViT in the dtype, the adapter fp32,
    through the backbone's own ``weights_dtype``). An fp32 backbone checkpoint is rounded to it (announced);
    the released InternViT weights are bf16, so 'bf16' holds them exactly.
    """
    from .common.geometry import check_slide
    from .config import build_model, load_config, strip_pretrained
    from .segmentation.checkpoint import load_segmentor_checkpoint
    from .segmentation.padding import enable_any_input_size
    cfg = load_config(config)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    if random_init:
        if checkpoint:
            raise ValueError(f'give a checkpoint ({checkpoint}) or random_init / --random-init, not both')
        strip_pretrained(cfg.model)
    cfg.model.train_cfg = None
    if slide:
        crop, stride = int(slide[0]), int(slide[1])
        cfg.model.test_cfg = dict(mode='slide', crop_size=(crop, crop), stride=(stride, stride))
    tc = cfg.model.get('test_cfg') or {}
    if tc.get('mode') == 'slide':  # before building: a window that cannot work fails fast, in one line
        check_slide(tc.get('crop_size'), tc.get('stride'), 1)
    if weights_dtype is None:
        model = build_model(cfg)
    else:
        model = _build_low_precision(cfg, weights_dtype, checkpoint)
    enable_any_input_size(model)  # the padding rule of perception/segmentation/padding.py; checks test_cfg
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


def _build_low_precision(cfg, weights_dtype: str, checkpoint):
    from mmseg.registry import MODELS

    from .config import build_model
    dtype = torch_dtype(weights_dtype, LOW_PRECISION, 'weights_dtype')
    adapter = (cfg.model.get('backbone') or {}).get('type') == 'InternViTAdapter'
    if adapter:  # its own build: the ViT in the dtype, the adapter fp32 (freezing changes nothing at test time);
        # on a copy: the config kept with the model stays the fp32 description (export.lowmem traces it)
        cfg = copy.deepcopy(cfg)
        cfg.model.backbone.update(weights_dtype=weights_dtype, freeze_vit=True)
    model = build_model(cfg, device='meta')
    if not adapter:
        model.backbone.to(dtype)
    model.to_empty(device='cpu')
    # to_empty leaves memory uninitialised: redo what the constructors did outside the backbone
    if cfg.model.get('data_preprocessor') is not None:
        model.data_preprocessor = MODELS.build(cfg.model.data_preprocessor)
    # (the backbone too when no checkpoint will overwrite it: norms, LayerScale, biases)
    skip = set(model.backbone.modules()) if checkpoint else set()
    for m in model.modules():
        if m not in skip and hasattr(m, 'reset_parameters'):
            m.reset_parameters()
    known = ('running_mean', 'running_var', 'num_batches_tracked')
    odd = [n for n, _ in model.named_buffers() if not n.startswith('data_preprocessor.') and not n.endswith(known)]
    if odd:
        raise ValueError(f'weights_dtype={weights_dtype!r}: buffers this low-memory build cannot restore: {odd}')
    low = sum(p.numel() for p in model.backbone.parameters() if p.dtype == dtype)
    rest = sum(p.numel() for p in model.backbone.parameters()) - low
    print_log(f'backbone built in {weights_dtype} on the meta device and materialised directly '
              f'({low / 1e9:.2f} B parameters, no fp32 copy'
              + (f'; the adapter\'s {rest / 1e9:.2f} B in fp32' if rest else '') + '); '
              + ('an fp32 backbone in the checkpoint is rounded to ' + weights_dtype if checkpoint else
                 'random / init_cfg weights'), logger='current')
    return model


def _pipeline(cfg):
    from mmcv.transforms import Compose
    steps = [copy.deepcopy(t) for t in cfg.test_pipeline
             if t['type'] not in ('LoadAnnotations', 'CheckSegMap')]
    steps[0] = dict(type='LoadImageFromNDArray')
    return Compose(steps)


def segment(model, img_bgr):
    """Label map (H x W, uint8/int64) of one image, and the SegDataSample.

    ``img_bgr``: an array, ``H x W x 3`` BGR (``H x W`` grey; ``H x W x 4`` BGRA: the alpha dropped,
    logged), or a path (decoded as training decodes it). uint8 is taken as is; uint16 becomes
    ``value * 255 / 65535`` rounded and float in [0, 1] ``value * 255`` rounded, each with a warning in
    the log; other dtypes (bool, int32, ...), floats outside [0, 1], NaN or infinity raise a one-line
    ``ValueError``. The conversion is ``perception.common.images.to_bgr_uint8``, the one the ONNX
    runtime (``perception.deploy``) applies, so both backends label the same input alike.
    """
    import torch
    from mmengine.dataset import pseudo_collate
    img = _as_bgr(img_bgr)
    data = _pipeline(model.cfg)(dict(img=img))
    with torch.no_grad():
        res = model.test_step(pseudo_collate([data]))[0]
    return res.pred_sem_seg.data[0].cpu().numpy(), res


def _as_bgr(image) -> np.ndarray:
    img, note = image_noted(image)
    if note:
        print_log(note, logger='current', level=logging.WARNING)
    return img


def overlay(img_bgr: np.ndarray, label: np.ndarray, palette, alpha: float = 0.5,
            side_by_side: bool = True) -> np.ndarray:
    """The image blended with the class colours, next to the plain image (``perception.deploy``'s
    overlay, side by side by default)."""
    return blend(img_bgr, label, palette, alpha, side_by_side)


class _TorchSegmenter:
    """The PyTorch segmentor behind ``perception.deploy``'s ``segment(img, alpha, side_by_side)``."""

    def __init__(self, model):
        self.model = model
        self.palette = (model.dataset_meta or {}).get('palette')
        # label PNGs: 8-bit up to 256 classes, 16-bit beyond (as the ONNX runtime writes them)
        self.label_dtype = np.uint8 if model.decode_head.num_classes <= 256 else np.uint16

    def segment(self, img_bgr, alpha: float = 0.5, side_by_side: bool = False):
        img = _as_bgr(img_bgr)  # converted once: the overlay is drawn on what was segmented
        label, _ = segment(self.model, img)
        return label.astype(self.label_dtype), overlay(img, label, self.palette, alpha, side_by_side)


def segment_images(model, inputs, out_dir: str, alpha: float = 0.5, progress: bool = True) -> Dict:
    """Writes ``<name>_label.png`` and ``<name>_overlay.jpg`` per image (the loop of
    ``perception.deploy.segment_images``, which the ONNX backend runs); unreadable images are reported
    by name and skipped. Returns ``{'written': [...], 'failed': {path: reason}}``."""
    return folder_loop(_TorchSegmenter(model), inputs, out_dir, alpha, progress,
                           log=lambda msg, level: print_log(msg, logger='current', level=level))
