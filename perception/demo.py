"""Small end-to-end jobs used by ``make demo``."""
import time
from typing import Optional, Tuple

import numpy as np
import torch
from mmengine.config import Config
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
    cfg = Config.fromfile(config)
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
