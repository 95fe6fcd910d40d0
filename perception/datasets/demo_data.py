"""A synthetic segmentation dataset in ADE20K layout, generated from a seed in seconds.

Six object classes, each with its own shape and texture (and a class-typical hue with jitter), on
textured backgrounds; label 0 is background (ignored with ``reduce_zero_label=True``, as ADE20K).

    images/{training,validation}/demo_XXXXX.jpg
    annotations/{training,validation}/demo_XXXXX.png
"""
import json
import shutil
from pathlib import Path
from typing import Tuple

import numpy as np

CLASSES = ('disc', 'square', 'triangle', 'ring', 'cross', 'hexagon')
PALETTE = [(220, 60, 60), (60, 160, 220), (240, 200, 40), (150, 80, 200), (60, 200, 90), (240, 130, 40)]
HUES = [(200, 50, 50), (50, 120, 210), (215, 190, 40), (140, 60, 190), (50, 170, 80), (230, 120, 30)]


def texture(kind: int, yy, xx, rng) -> np.ndarray:
    """A 0..1 pattern per class: dots, h-stripes, checker, diagonal stripes, v-stripes, speckle."""
    p = rng.integers(5, 8)
    ph = rng.integers(0, p)
    if kind == 0:
        return ((((yy + ph) % p) - p / 2) ** 2 + (((xx + ph) % p) - p / 2) ** 2 < (p / 3.2) ** 2).astype(float)
    if kind == 1:
        return (((yy + ph) // (p // 2 + 1)) % 2).astype(float)
    if kind == 2:
        return ((((yy + ph) // p) + ((xx + ph) // p)) % 2).astype(float)
    if kind == 3:
        return (((yy + xx + ph) // (p // 2 + 1)) % 2).astype(float)
    if kind == 4:
        return (((xx + ph) // (p // 2 + 1)) % 2).astype(float)
    return (rng.random(yy.shape) > 0.5).astype(float)


def shape_mask(kind: int, yy, xx, cy, cx, r, theta) -> np.ndarray:
    dy, dx = yy - cy, xx - cx
    c, s = np.cos(theta), np.sin(theta)
    u, v = c * dx + s * dy, -s * dx + c * dy
    if kind == 0:
        return dx ** 2 + dy ** 2 <= r ** 2
    if kind == 1:
        return (np.abs(u) <= r * 0.8) & (np.abs(v) <= r * 0.8)
    if kind == 2:
        return (v <= r * 0.5) & (v >= -r + 1.7320508 * np.abs(u) * 0.9)
    if kind == 3:
        d = dx ** 2 + dy ** 2
        return (d <= r ** 2) & (d >= (0.55 * r) ** 2)
    if kind == 4:
        return ((np.abs(u) <= r * 0.3) & (np.abs(v) <= r)) | ((np.abs(v) <= r * 0.3) & (np.abs(u) <= r))
    ang = np.arctan2(v, u)
    rr = np.sqrt(u ** 2 + v ** 2)
    sector = np.cos(np.pi / 6) / np.cos(((ang % (np.pi / 3)) - np.pi / 6))
    return rr <= r * 0.95 * sector


def background(h, w, rng) -> np.ndarray:
    base = rng.integers(60, 200, 3).astype(float)
    small = rng.normal(0, 30, (h // 16 + 2, w // 16 + 2, 3))
    import cv2
    blur = cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)
    grain = rng.normal(0, 10, (h, w, 3))
    return np.clip(base + blur + grain, 0, 255)


def make_sample(rng: np.random.Generator, size: Tuple[int, int] = (112, 112)):
    h, w = size
    yy, xx = np.mgrid[0:h, 0:w].astype(float)
    img = background(h, w, rng)
    label = np.zeros((h, w), np.uint8)
    for _ in range(rng.integers(1, 4)):
        kind = int(rng.integers(0, len(CLASSES)))
        r = rng.uniform(0.16, 0.3) * min(h, w)
        cy, cx = rng.uniform(r * 0.7, h - r * 0.7), rng.uniform(r * 0.7, w - r * 0.7)
        m = shape_mask(kind, yy, xx, cy, cx, r, rng.uniform(0, np.pi))
        tex = texture(kind, yy.astype(int), xx.astype(int), rng)[..., None]
        hue = np.clip(np.array(HUES[kind]) + rng.normal(0, 25, 3), 0, 255)
        dark = hue * rng.uniform(0.25, 0.5)
        obj = tex * hue + (1 - tex) * dark
        img[m] = obj[m]
        label[m] = kind + 1
    img = np.clip(img + rng.normal(0, 4, img.shape), 0, 255).astype(np.uint8)
    return img, label


GENERATOR = 'perception.demo_shapes'
GENERATOR_VERSION = 1  # bump when make_sample draws different images for the same seed


def demo_params(seed: int = 0, num_train: int = 320, num_val: int = 80, size=(112, 112)) -> dict:
    """What a generated folder must have been made with to be reused."""
    return dict(generator=GENERATOR, generator_version=GENERATOR_VERSION, seed=int(seed), num_train=int(num_train),
                num_val=int(num_val), size=[int(size[0]), int(size[1])])


def ensure_generated(out, want: dict, make, counts, log=print, legacy=lambda meta: False) -> Path:
    """Reuse the generated folder ``out`` only when its ``meta.json`` records exactly ``want`` (which
    names the generator and its version), says it is complete, and ``counts(out)`` finds every file
    (``{name: (found, expected)}``); a folder this generator made otherwise (or left half-written) is
    removed and ``make()`` writes it again, the log saying what differed; a non-empty folder it did
    not make is refused, untouched. ``legacy(meta)``: a meta.json of an older version of it."""
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        try:
            meta = json.loads((out / 'meta.json').read_text())
        except (OSError, ValueError):
            meta = None
        if not (isinstance(meta, dict) and (meta.get('generator') == want['generator'] or legacy(meta))):
            raise ValueError(f"{out} exists and was not made by the demo generator (no {want['generator']} "
                             'meta.json): give the demo another data folder; this one is left as it is')
        diff = {k: (meta.get(k), v) for k, v in want.items() if meta.get(k) != v}
        if not meta.get('complete', True):
            diff['complete'] = (False, True)
        for k, (n, expected) in counts(out).items():
            if n != expected and k not in diff:
                diff[f'{k} on disk'] = (n, expected)
        if not diff:
            log(f'reusing the demo dataset in {out} ({want})')
            return out
        log(f'regenerating the demo dataset in {out}: it was made with other parameters {diff} (was, wanted)')
        shutil.rmtree(out)
    make()
    log(f'generated the demo dataset in {out}')
    return out


def write_meta(out: Path, meta: dict, complete: bool):
    """``meta.json``, written atomically; ``complete=False`` first, ``True`` after the last file."""
    from ..common.files import write_bytes_atomic
    out.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(out / 'meta.json', json.dumps(dict(meta, complete=complete), indent=1).encode())


def ensure_demo_dataset(out: str, seed: int = 0, num_train: int = 320, num_val: int = 80,
                        size: Tuple[int, int] = (112, 112), log=print) -> Path:
    """The segmentation demo's data in ``out``, reused only when made with these parameters (seed,
    counts, size, generator version) and complete (:func:`ensure_generated`)."""
    want = demo_params(seed, num_train, num_val, size)

    def counts(root):
        return {'num_train': (len(list((root / 'images/training').glob('*.jpg'))), want['num_train']),
                'num_val': (len(list((root / 'images/validation').glob('*.jpg'))), want['num_val'])}
    return ensure_generated(out, want, lambda: make_demo_dataset(out, seed, num_train, num_val, size), counts, log,
                            legacy=lambda meta: meta.get('classes') == CLASSES and 'seed' in meta)


def make_demo_dataset(out: str, seed: int = 0, num_train: int = 320, num_val: int = 80,
                      size: Tuple[int, int] = (112, 112)) -> Path:
    """Write the dataset under ``out`` (ADE20K layout) and return the folder. ``meta.json`` says it is
    incomplete until the last file is written (a killed run is regenerated, not reused)."""
    import cv2
    out = Path(out)
    params = dict(demo_params(seed, num_train, num_val, size), classes=CLASSES, palette=PALETTE)
    write_meta(out, params, complete=False)
    rng = np.random.default_rng(seed)
    for split, n in (('training', num_train), ('validation', num_val)):
        (out / 'images' / split).mkdir(parents=True, exist_ok=True)
        (out / 'annotations' / split).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            img, label = make_sample(rng, size)
            name = f'demo_{split[0]}{i:05d}'
            cv2.imwrite(str(out / 'images' / split / f'{name}.jpg'), img[..., ::-1],
                        [cv2.IMWRITE_JPEG_QUALITY, 95])
            cv2.imwrite(str(out / 'annotations' / split / f'{name}.png'), label)
    write_meta(out, params, complete=True)
    return out
