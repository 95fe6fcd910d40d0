"""A synthetic classification dataset in ImageNet folder layout, from the shapes demo's generator.

    train/cK_<class>/<class>_XXXXX.JPEG   (``cK_`` keeps the folders' sorted order = label order K)
    val/val_XXXXX.JPEG  +  meta/val.txt  ("val_XXXXX.JPEG <label>" per line)

One object per image; its class decides shape, texture and hue (as in the segmentation demo).
"""
from pathlib import Path

import numpy as np

from .demo_data import CLASSES, HUES, background, shape_mask, texture, ensure_generated, write_meta


def class_folder(k: int) -> str:
    return f'c{k}_{CLASSES[k]}'


def make_cls_sample(rng: np.random.Generator, kind: int, size=(112, 112)) -> np.ndarray:
    h, w = size
    yy, xx = np.mgrid[0:h, 0:w].astype(float)
    img = background(h, w, rng)
    r = rng.uniform(0.32, 0.45) * min(h, w)
    cy, cx = rng.uniform(r * 0.8, h - r * 0.8), rng.uniform(r * 0.8, w - r * 0.8)
    m = shape_mask(kind, yy, xx, cy, cx, r, rng.uniform(0, np.pi))
    tex = texture(kind, yy.astype(int), xx.astype(int), rng)[..., None]
    hue = np.clip(np.array(HUES[kind]) + rng.normal(0, 35, 3), 0, 255)
    obj = tex * hue + (1 - tex) * hue * rng.uniform(0.25, 0.5)
    img[m] = obj[m]
    return np.clip(img + rng.normal(0, 4, img.shape), 0, 255).astype(np.uint8)


GENERATOR = 'perception.demo_shapes_cls'
GENERATOR_VERSION = 1  # bump when make_cls_sample draws different images for the same seed


def cls_demo_params(seed: int = 0, train_per_class: int = 40, val_per_class: int = 12, size=(112, 112)) -> dict:
    return dict(generator=GENERATOR, generator_version=GENERATOR_VERSION, seed=int(seed),
                train_per_class=int(train_per_class), val_per_class=int(val_per_class),
                size=[int(size[0]), int(size[1])])


def ensure_cls_demo_dataset(out, seed: int = 0, train_per_class: int = 40, val_per_class: int = 12,
                            size=(112, 112), log=print) -> Path:
    """The classification demo's data in ``out``: reused only when made with these parameters and
    complete, regenerated when made with others, refused when the generator did not make it."""
    want = cls_demo_params(seed, train_per_class, val_per_class, size)

    def counts(root):
        n = len(CLASSES)
        return {'train images': (len(list((root / 'train').glob('*/*.JPEG'))), n * want['train_per_class']),
                'val images': (len(list((root / 'val').glob('*.JPEG'))), n * want['val_per_class']),
                'backbone': (int((root / 'tiny_backbone.safetensors').is_file()), 1)}
    return ensure_generated(out, want, lambda: make_cls_demo_dataset(out, seed, train_per_class, val_per_class,
                                                                     size), counts, log,
                            legacy=lambda meta: meta.get('classes') == CLASSES and 'train_per_class' in meta)


def make_cls_demo_dataset(out, seed: int = 0, train_per_class: int = 40, val_per_class: int = 12,
                          size=(112, 112)) -> Path:
    import cv2
    out = Path(out)
    params = dict(cls_demo_params(seed, train_per_class, val_per_class, size), classes=CLASSES)
    write_meta(out, params, complete=False)
    rng = np.random.default_rng(seed)
    (out / 'meta').mkdir(parents=True, exist_ok=True)
    (out / 'val').mkdir(parents=True, exist_ok=True)
    for k, name in enumerate(CLASSES):
        d = out / 'train' / class_folder(k)
        d.mkdir(parents=True, exist_ok=True)
        for i in range(train_per_class):
            cv2.imwrite(str(d / f'{name}_{i:05d}.JPEG'), make_cls_sample(rng, k, size)[..., ::-1],
                        [cv2.IMWRITE_JPEG_QUALITY, 95])
    lines = []
    labels = np.repeat(np.arange(len(CLASSES)), val_per_class)
    rng.shuffle(labels)
    for i, k in enumerate(labels):
        fname = f'val_{i:05d}.JPEG'
        cv2.imwrite(str(out / 'val' / fname), make_cls_sample(rng, int(k), size)[..., ::-1],
                    [cv2.IMWRITE_JPEG_QUALITY, 95])
        lines.append(f'{fname} {int(k)}')
    (out / 'meta' / 'val.txt').write_text('\n'.join(lines) + '\n')
    write_demo_backbone(out / 'tiny_backbone.safetensors', seed=seed)
    write_meta(out, params, complete=True)
    return out


DEMO_TINY_ARCH = dict(embed_dims=128, num_layers=6, num_heads=4, feedforward_channels=512, norm_type='rms_norm',
                      qk_normalization=True, qkv_bias=False, patch_size=14, img_size=112)


def write_demo_backbone(path, seed: int = 0, arch: dict = None):
    """A seeded, randomly initialised tiny InternViT saved as a perception safetensors checkpoint (the
    'pretrained' backbone the classification demo probes; nothing can be downloaded here)."""
    import json as _json

    import torch

    from ..checkpoint.io import LazyTensor, write_safetensors
    from ..models.internvit import InternViT
    arch = dict(arch or DEMO_TINY_ARCH)
    torch.manual_seed(seed)
    model = InternViT(arch)
    model.init_weights()
    sd = {k: LazyTensor.wrap(v.detach().clone()) for k, v in model.state_dict().items()}
    write_safetensors(path, sd, metadata={'format': 'perception-internvit', 'arch': _json.dumps(arch),
                                         'source': f'random init, seed {seed}', 'source_format': 'internvit'})
    return path
