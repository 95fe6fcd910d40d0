"""Small end-to-end jobs used by ``make demo``."""
import time
from typing import Optional, Tuple

import numpy as np
import torch
from .config import load_config
from mmengine.logging import MMLogger

from .models.internvit import InternViT


def test_pattern(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A deterministic RGB uint8 image: gradients, a disc and a checkerboard."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.stack([xx * 255 // max(w - 1, 1), yy * 255 // max(h - 1, 1), np.full_like(xx, 128)], -1)
    disc = (yy - h / 2) ** 2 + (xx - w / 3) ** 2 < (min(h, w) / 5) ** 2
    img[disc] = (230, 40, 40)
    checker = ((yy // 16 + xx // 16) % 2 == 0) & (xx > 2 * w // 3)
    img[checker] = (20, 20, 20)
    img = img + rng.integers(-8, 9, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def load_image(path: str) -> np.ndarray:
    import cv2
    img = cv2.imread(path, cv2.IMREAD_COLOR)
    if img is None:
        raise ValueError(f'cannot read image {path!r} (missing, corrupt or not an image)')
    return img[..., ::-1].copy()


def to_tensor(img: np.ndarray, size: Tuple[int, int]) -> torch.Tensor:
    import cv2
    img = cv2.resize(img, (size[1], size[0]), interpolation=cv2.INTER_CUBIC)
    mean = np.array([123.675, 116.28, 103.53], np.float32)
    std = np.array([58.395, 57.12, 57.375], np.float32)
    x = (img.astype(np.float32) - mean) / std
    return torch.from_numpy(x).permute(2, 0, 1)[None].contiguous()


def run_backbone_demo(config: str, image: Optional[str] = None, size=(224, 308), amp: bool = False):
    logger = MMLogger.get_instance('perception', log_level='INFO')
    cfg = load_config(config)
    bcfg = dict(cfg.get('backbone') or cfg.model.backbone)
    if bcfg.pop('type', 'InternViT') != 'InternViT':
        raise ValueError(f'{config}: the backbone type is not InternViT')
    model = InternViT(**bcfg)
    model.init_weights()
    model.eval()
    img = load_image(image) if image else test_pattern(*size)
    x = to_tensor(img, size)
    logger.info(f'config {config}: arch {model.arch}')
    logger.info(f'input {tuple(x.shape)}; attention backend {model.resolved_attn_backend(x.device)!r} '
                f'(requested {model.attn_backend!r})')
    t0 = time.perf_counter()
    with torch.no_grad(), torch.autocast('cpu', dtype=torch.bfloat16, enabled=amp):
        feats = model(x)
    dt = time.perf_counter() - t0
    for i, f in zip(model.out_indices, feats):
        logger.info(f'block {i:2d}: feature map {tuple(f.shape)} {f.dtype}, mean {f.float().mean():+.4f}, '
                    f'std {f.float().std():.4f}')
    logger.info(f'forward {dt * 1000:.1f} ms ({"bf16 autocast" if amp else "fp32"})')
    return feats


DEMO_CONFIG = 'mmcfg/demo/upernet_internvit-tiny_1xb8-1k_demo-shapes-112x112.py'


def model_summary(model_cfg) -> str:
    """'InternViT + UPerHead', 'InternViTAdapter + Mask2FormerHead': the learning curve's title names the
    model the demo config trained (``--config`` runs any of them)."""
    parts = [(model_cfg.get(k) or {}).get('type') for k in ('backbone', 'neck', 'decode_head')]
    return 'tiny ' + ' + '.join(str(p) for p in parts if p)


def demo_precision_is_fp32(fp32: Optional[bool], logger) -> bool:
    """The demo's precision: as asked, else bf16 autocast only where bf16 is native (announced)."""
    if fp32 is not None:
        return fp32
    from .engine.optim_wrapper import cpu_bf16_note, cpu_has_native_bf16
    if torch.cuda.is_available() or cpu_has_native_bf16():
        return False
    logger.info(cpu_bf16_note() + ': the demo trains in fp32 (same mIoU; --bf16 forces bf16)')
    return True


def run_segmentation_demo(config: str = DEMO_CONFIG, work_dir: str = 'work_dirs/demo',
                          data_root: str = 'data/demo_shapes', seed: int = 0, num_overlays: int = 6,
                          cfg_options: Optional[dict] = None, fp32: Optional[bool] = None) -> dict:
    """``make demo``: generate the shapes dataset, train a tiny InternViT + UperNet on CPU (or the model of
    another demo config: ``tools/demo.py --config``, e.g. the adapter + Mask2Former one), evaluate,
    write overlays of a few validation images and the learning curve, return the metrics.

    ``fp32``: None (default) trains in bf16 autocast where the CPU (or a GPU) computes bf16 natively
    and in fp32 elsewhere, and says which; True / False force fp32 / bf16."""
    import os
    import os.path as osp

    from .apis import train
    from .datasets.demo_data import ensure_demo_dataset
    from .inference import init_segmentor, segment_images
    from .visualization import find_scalars, plot_learning_curve
    logger = MMLogger.get_instance('perception', log_level='INFO')
    t0 = time.perf_counter()
    ensure_demo_dataset(data_root, seed=seed, log=logger.info)
    opts = {'train_dataloader.dataset.data_root': data_root, 'val_dataloader.dataset.data_root': data_root,
            'test_dataloader.dataset.data_root': data_root}
    opts.update(cfg_options or {})
    fp32 = demo_precision_is_fp32(fp32, logger)
    from .engine.checkpoints import checkpoints_in
    if checkpoints_in(work_dir):  # an earlier demo's run is kept: this one goes next to it
        earlier, work_dir = work_dir, f'{work_dir.rstrip("/")}-{time.strftime("%Y%m%d_%H%M%S")}'
        logger.info(f'{earlier} holds the checkpoints of an earlier demo run (kept): this run writes to '
                    f'{work_dir}')
    runner = train(config, work_dir=work_dir, cfg_options=opts, fp32=fp32)
    hub = runner.message_hub
    if runner.val_loop is not None and runner.iter % runner.train_loop.val_interval == 0 \
            and 'val/mIoU' in hub.log_scalars:
        metrics = {k[len('val/'):]: v.current() for k, v in hub.log_scalars.items() if k.startswith('val/')}
    else:  # the last iteration was not validated: do it now
        metrics = runner.val_loop.run() if runner.val_loop is not None else {}
    ckpt = osp.join(work_dir, f'iter_{runner.iter}.pth')
    model = init_segmentor(config, ckpt, cfg_options=opts)
    val_imgs = sorted(os.listdir(osp.join(data_root, 'images', 'validation')))[:num_overlays]
    out_dir = osp.join(work_dir, 'overlays')
    segment_images(model, [osp.join(data_root, 'images', 'validation', f) for f in val_imgs], out_dir,
                   progress=False)
    curve = osp.join(work_dir, 'learning_curve.png')
    scalars = find_scalars(runner.log_dir)
    if scalars:
        plot_learning_curve(scalars, curve, title=f'demo: {model_summary(runner.cfg.model)} on generated shapes')
    elapsed = time.perf_counter() - t0
    miou = float(metrics.get('mIoU', float('nan')))
    logger.info(f'demo finished in {elapsed / 60:.1f} min: validation mIoU {miou:.2f} '
                f'(aAcc {float(metrics.get("aAcc", float("nan"))):.2f}); overlays in {out_dir}, learning curve '
                f'{curve}, checkpoint {ckpt}')
    return dict(metrics=metrics, elapsed_s=elapsed, overlays=out_dir, curve=curve, checkpoint=ckpt)
