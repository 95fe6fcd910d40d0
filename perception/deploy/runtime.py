"""Sliding-window segmentation with an exported ONNX segmentor (numpy + onnxruntime + OpenCV)."""
import logging
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from ..common.geometry import int_pair, padded_size, window_boxes
from ..common.images import image_noted
from .bundle import DeployError, check_digests, check_files, check_session, open_session, read_manifest

logger = logging.getLogger(__name__)

ImageLike = Union[str, Path, np.ndarray]


# ----------------------------------------------------------------------------- geometry
def short_side_size(h: int, w: int, short_side: int, size_divisor: int = 1,
                    max_long_side: Optional[int] = None) -> Tuple[int, int]:
    """Short side to ``short_side`` (long side capped by ``max_long_side``), both rounded to a multiple
    of ``size_divisor``: the rule of ``perception.datasets.ResizeShortSide``."""
    scale = short_side / min(h, w)
    if max_long_side and max(h, w) * scale > max_long_side:
        scale = max_long_side / max(h, w)
    d = max(1, int(size_divisor))
    return max(d, int(round(h * scale / d)) * d), max(d, int(round(w * scale / d)) * d)


def keep_ratio_size(h: int, w: int, scale: Sequence[int]) -> Tuple[int, int]:
    """mmseg's ``Resize(scale=(long, short), keep_ratio=True)`` (mmcv.rescale_size)."""
    long_edge, short_edge = max(scale), min(scale)
    f = min(long_edge / max(h, w), short_edge / min(h, w))
    return int(h * f + 0.5), int(w * f + 0.5)


def _src_coords(n_out: int, n_in: int, align_corners: bool):
    """Source rows/cols and weights of PyTorch's bilinear interpolation (no antialias)."""
    d = np.arange(n_out, dtype=np.float64)
    if align_corners:
        src = d * ((n_in - 1) / (n_out - 1) if n_out > 1 else 0.)
    else:
        src = np.maximum((d + 0.5) * (n_in / n_out) - 0.5, 0.)
    i0 = np.minimum(np.floor(src).astype(np.int64), n_in - 1)
    i1 = np.minimum(i0 + 1, n_in - 1)
    lam = (src - i0).astype(np.float32)
    return i0, i1, lam


def resize_bilinear(x: np.ndarray, size: Tuple[int, int], align_corners: bool = False) -> np.ndarray:
    """``[C, H, W]`` float maps resized to ``size`` like ``F.interpolate(mode='bilinear')``."""
    c, h, w = x.shape
    oh, ow = int(size[0]), int(size[1])
    if (oh, ow) == (h, w):
        return x
    r0, r1, lr = _src_coords(oh, h, align_corners)
    c0, c1, lc = _src_coords(ow, w, align_corners)
    rows = x[:, r0] * (1 - lr)[None, :, None] + x[:, r1] * lr[None, :, None]
    return rows[:, :, c0] * (1 - lc) + rows[:, :, c1] * lc


def argmax_resized(x: np.ndarray, size: Tuple[int, int], align_corners: bool = False,
                   rows_per_chunk: int = 256) -> np.ndarray:
    """``argmax`` over classes of ``resize_bilinear(x, size)``, in row chunks (never the full map)."""
    c, h, w = x.shape
    oh, ow = int(size[0]), int(size[1])
    if (oh, ow) == (h, w):
        return x.argmax(0)
    r0, r1, lr = _src_coords(oh, h, align_corners)
    c0, c1, lc = _src_coords(ow, w, align_corners)
    out = np.empty((oh, ow), np.int64)
    for s in range(0, oh, rows_per_chunk):
        e = min(oh, s + rows_per_chunk)
        rows = x[:, r0[s:e]] * (1 - lr[s:e])[None, :, None] + x[:, r1[s:e]] * lr[s:e][None, :, None]
        out[s:e] = (rows[:, :, c0] * (1 - lc) + rows[:, :, c1] * lc).argmax(0)
    return out


def default_palette(n: int) -> List[List[int]]:
    """The deterministic palette ``perception.inference.overlay`` uses when a dataset has none."""
    return np.random.RandomState(0).randint(0, 255, (max(256, n), 3)).astype(np.uint8)[:n].tolist()


def overlay(img_bgr: np.ndarray, label: np.ndarray, palette, alpha: float = 0.5,
            side_by_side: bool = False) -> np.ndarray:
    """The image blended with the class colours (RGB palette); next to the plain image when asked."""
    pal = np.asarray(palette if palette is not None else default_palette(int(label.max()) + 1), np.uint8)
    color = pal[np.clip(label, 0, len(pal) - 1)][..., ::-1]  # RGB palette -> BGR
    blend = (img_bgr * (1 - alpha) + color * alpha).astype(np.uint8)
    return np.concatenate([img_bgr, blend], axis=1) if side_by_side else blend


def as_bgr(image: ImageLike) -> np.ndarray:
    """The BGR uint8 image the runtime segments (``perception.common.images.image_noted``, as the
    PyTorch path converts it): a path is read as training reads it; an array is taken by its documented
    range (uint8 as is; uint16 and float in [0, 1] scaled to 8 bits; other dtypes, floats outside
    [0, 1] and NaN refused with a ``ValueError``). What a conversion changed is logged as a warning."""
    img, note = image_noted(image)
    if note:
        logger.warning('%s', note)
    return img


# ----------------------------------------------------------------------------- the runtime
class Segmenter:
    """An exported segmentor: ``segment(image)`` -> ``(label_map, overlay)`` for images of any size.

    Inference follows the exported config as mmseg runs it: the test resize (``manifest['resize']``),
    then ``manifest['mode']``: ``slide`` (mmseg's crop-sized windows over the resized image, placed as
    mmseg places them, overlapping logits averaged) or ``whole`` (the resized image at once), then the
    logits resized back to the image size. A network input whose side is not a multiple of the
    manifest's ``size_divisor`` (the patch size of a plain ViT, 32 for InternViTAdapter; a window of an
    image smaller than the crop, a ``whole`` image) is padded at the bottom and right to one and its
    logits cropped back: the rule of ``perception/segmentation/padding.py``, which ``tools/infer.py``
    applies in PyTorch too.
    """

    def __init__(self, bundle_dir, manifest: Dict, session, slide: Optional[Sequence[Sequence[int]]] = None,
                 batch_size: int = 4):
        self.bundle_dir = Path(bundle_dir)
        self.manifest = manifest
        self.session = session
        self.input_name = manifest['input']['name']
        self.num_classes = int(manifest['num_classes'])
        self.classes = list(manifest['classes'])
        self.palette = manifest.get('palette') or default_palette(self.num_classes)
        self.patch_size = int(manifest['patch_size'])
        # the pad multiple of network inputs (bundles before version 4 have none: their patch size)
        self.size_divisor = int(manifest.get('size_divisor') or self.patch_size)
        self.min_size = int(manifest.get('min_size') or self.size_divisor)
        self.resize = manifest.get('resize')
        self.align_corners = bool(manifest.get('align_corners', False))
        inp = manifest['input']
        self.mean = np.asarray(inp['mean'], np.float32)
        self.std = np.asarray(inp['std'], np.float32)
        self.rgb = inp.get('color', 'RGB') == 'RGB'
        self.mode = 'slide' if slide else manifest.get('mode', 'slide')
        self.crop = self.stride = None
        if self.mode == 'slide':
            crop, stride = (slide or (manifest['slide']['crop'], manifest['slide']['stride']))
            crop, stride = int_pair(crop), int_pair(stride)
            d = self.size_divisor
            if min(crop) < 1 or min(stride) < 1:
                raise ValueError(f'slide crop {list(crop)} and stride {list(stride)} must be positive')
            if crop[0] % d or crop[1] % d or min(crop) < self.min_size:
                what = f'the patch size {d}' if d == self.patch_size else f'the size divisor {d}'
                raise ValueError(f'slide crop {list(crop)} must be multiples of {what} and at least {self.min_size}')
            if stride[0] > crop[0] or stride[1] > crop[1]:
                raise ValueError(f'slide stride {list(stride)} is larger than the crop {list(crop)}: pixels '
                                 'between windows would get no prediction')
            self.crop, self.stride = crop, stride
        elif self.mode != 'whole':
            raise ValueError(f'test mode {self.mode!r} is not supported: "whole" or "slide"')
        self.batch_size = max(1, int(batch_size))

    def __repr__(self):
        mode = f'slide crop {self.crop} stride {self.stride}' if self.mode == 'slide' else 'whole image'
        pad = '' if self.size_divisor == self.patch_size else f', inputs padded to multiples of {self.size_divisor}'
        return f'Segmenter({self.bundle_dir}, {self.num_classes} classes, {mode}, patch {self.patch_size}{pad})'


    # -- steps
    def working_size(self, h: int, w: int) -> Tuple[int, int]:
        """The size the image is resized to before the sliding window."""
        r = self.resize
        if r and r['type'] == 'short_side':
            return short_side_size(h, w, r['short_side'], r.get('size_divisor') or 1, r.get('max_long_side'))
        if r and r['type'] == 'keep_ratio':
            return keep_ratio_size(h, w, r['scale'])
        if r and r['type'] == 'fixed':
            return int(r['size'][0]), int(r['size'][1])
        return h, w

    def normalize(self, img_bgr: np.ndarray) -> np.ndarray:
        """``[3, H, W]`` float32: (RGB or BGR as exported) minus mean, over std."""
        x = img_bgr[:, :, ::-1] if self.rgb else img_bgr
        x = (x.astype(np.float32) - self.mean) / self.std
        return np.ascontiguousarray(x.transpose(2, 0, 1))

    def run(self, batch: np.ndarray) -> np.ndarray:
        """The ONNX model on a normalised ``[B, 3, H, W]`` batch: logits ``[B, C, H, W]``."""
        return self.session.run(None, {self.input_name: np.ascontiguousarray(batch, np.float32)})[0]

    def net_logits(self, batch: np.ndarray) -> np.ndarray:
        """The network on ``[B, 3, h, w]`` of any size: padded at the bottom/right to a multiple of
        ``size_divisor`` (at least ``min_size``) with zeros, logits cropped back to ``h x w``."""
        b, _, h, w = batch.shape
        ph, pw = padded_size(h, w, self.size_divisor, self.min_size)
        if (ph, pw) != (h, w):
            batch = np.pad(batch, ((0, 0), (0, 0), (0, ph - h), (0, pw - w)))
        out = self.run(batch)
        if out.ndim != 4 or out.shape[:2] != (b, self.num_classes) or tuple(out.shape[2:]) != (ph, pw):
            raise DeployError(f'{self.bundle_dir}: the model returned shape {list(out.shape)} for an input '
                              f'of {[b, 3, ph, pw]}, expected {[b, self.num_classes, ph, pw]}')
        return out[:, :, :h, :w]

    def slide_logits(self, x: np.ndarray) -> np.ndarray:
        """Averaged sliding-window logits ``[C, H, W]`` of a normalised ``[3, H, W]`` image: mmseg's
        ``slide_inference`` (crop-sized windows over the image itself, ``window_boxes``)."""
        _, h, w = x.shape
        boxes = window_boxes(h, w, self.crop, self.stride)
        preds = np.zeros((self.num_classes, h, w), np.float32)
        count = np.zeros((h, w), np.float32)
        for s in range(0, len(boxes), self.batch_size):
            chunk = boxes[s:s + self.batch_size]
            out = self.net_logits(np.stack([x[:, y1:y2, x1:x2] for y1, y2, x1, x2 in chunk]))
            for (y1, y2, x1, x2), o in zip(chunk, out):
                preds[:, y1:y2, x1:x2] += o
                count[y1:y2, x1:x2] += 1
        if not count.all():  # cannot happen with stride <= crop (checked at load)
            raise DeployError(f'{self.bundle_dir}: windows {self.crop} / {self.stride} leave pixels uncovered')
        preds /= count[None]
        return preds

    def whole_logits(self, x: np.ndarray) -> np.ndarray:
        """Logits ``[C, H, W]`` of a normalised ``[3, H, W]`` image run at once (mmseg's ``whole``)."""
        return self.net_logits(x[None])[0]

    def _working_logits(self, img: np.ndarray) -> np.ndarray:
        import cv2
        h, w = img.shape[:2]
        nh, nw = self.working_size(h, w)
        if (nh, nw) != (h, w):
            img = cv2.resize(img, (nw, nh), interpolation=cv2.INTER_LINEAR)
        x = self.normalize(img)
        return self.slide_logits(x) if self.mode == 'slide' else self.whole_logits(x)

    # -- public
    def logits(self, image: ImageLike) -> np.ndarray:
        """Class logits ``[C, H, W]`` at the image's own size."""
        img = as_bgr(image)
        return resize_bilinear(self._working_logits(img), img.shape[:2], self.align_corners)

    def predict(self, image: ImageLike) -> np.ndarray:
        """The label map ``H x W`` (uint8 up to 256 classes, else int32)."""
        img = as_bgr(image)
        label = argmax_resized(self._working_logits(img), img.shape[:2], self.align_corners)
        return label.astype(np.uint8 if self.num_classes <= 256 else np.int32)

    def segment(self, image: ImageLike, alpha: float = 0.5,
                side_by_side: bool = False) -> Tuple[np.ndarray, np.ndarray]:
        """``(label_map H x W, overlay H x W x 3 uint8 BGR)``.

        ``image``: a path (decoded as training decodes it: OpenCV's 8-bit colour, pixels turned as the
        EXIF orientation tag says; a conversion is logged) or an array, ``H x W x 3`` BGR (``H x W`` grey;
        ``H x W x 4`` BGRA: the alpha dropped, logged). uint8 is taken as is; uint16 becomes
        ``value * 255 / 65535`` rounded, float in [0, 1] ``value * 255`` rounded, each with a warning in
        the log; other dtypes (bool, int32, ...), floats outside [0, 1], NaN or infinity raise a one-line
        ``ValueError``. ``perception.inference.segment`` converts with the same function, so both
        backends label the same input alike. The overlay is drawn on the converted image."""
        img = as_bgr(image)
        label = argmax_resized(self._working_logits(img), img.shape[:2], self.align_corners)
        label = label.astype(np.uint8 if self.num_classes <= 256 else np.int32)
        return label, overlay(img, label, self.palette, alpha, side_by_side)


def load_bundle(bundle_dir, providers: Optional[Sequence[str]] = None, threads: Optional[int] = None,
                slide: Optional[Sequence] = None, batch_size: int = 4, verify_hashes: bool = False) -> Segmenter:
    """Open an export bundle: the manifest is validated against the ONNX model (format tag, model id,
    input name and rank, number of classes, patch size) and its classes, palette and preprocessing
    against their sha256 in ``digests`` (``check_digests``); every error names the file and key at fault.

    ``slide=(crop, stride)`` overrides the manifest's test mode and window; ``verify_hashes`` checks
    every file's sha256 (slow for large models; sizes and the manifest's digests are always checked).
    """
    bundle_dir = Path(bundle_dir)
    manifest = read_manifest(bundle_dir)
    check_files(bundle_dir, manifest, verify_hashes)
    path = bundle_dir / manifest['onnx']['file']
    session = open_session(path, providers, threads, low_memory=bool(manifest['onnx'].get('low_memory')))
    check_session(session, manifest, path)
    check_digests(bundle_dir, manifest)
    seg = Segmenter(bundle_dir, manifest, session, slide=slide, batch_size=batch_size)
    logger.info('loaded %s', seg)
    return seg
