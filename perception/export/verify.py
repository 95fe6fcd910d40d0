"""Verification: each exported model against PyTorch on sample shapes (tolerance, argmax agreement)."""
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

import numpy as np
import torch
from mmengine.config import ConfigDict
from mmengine.logging import print_log

from .errors import ExportVerificationError
from .writers import INPUT_NAME


DEFAULT_TOLERANCE = 1e-3  # max |onnx - torch| over max(1, max |torch logit|)
DEFAULT_TOLERANCE_FP16 = 2e-2  # the same for an fp16 ONNX model against PyTorch's fp32 model


DEFAULT_MIN_AGREEMENT = 0.999  # fraction of pixels whose argmax must agree


def default_verify_sizes(crop: Sequence[int], patch: int, min_size: int) -> List[Tuple[int, int, int]]:
    """Two sample shapes: the crop (batch 1) and a smaller non-square one (batch 2), e.g. 504x504 and
    2 x 252x378 (the check costs about 1.75 crops in each runtime)."""
    ch, cw = crop

    def side(v):
        return max(min_size, int(round(v / patch)) * patch)
    h2, w2 = side(ch / 2), side(cw * 3 / 4)
    if h2 == w2:
        w2 += patch
    return [(1, ch, cw), (2, h2, w2)]


def _measure(out: np.ndarray, ref: np.ndarray, out_label, ref_label, agreement_key: str) -> Dict:
    """Max |logit difference|, the largest reference logit, and the fraction of equal labels."""
    return {'max_abs_diff': float(np.abs(out - ref).max()), 'max_abs_logit': float(np.abs(ref).max()),
            agreement_key: float((out_label == ref_label).mean())}


def _problems(where: str, row: Dict, agreement_key: str, tolerance: float, min_agreement: float) -> List[str]:
    """What is out of bounds: the difference past ``tolerance x max(1, max |logit|)``, the agreement."""
    diff, scale, agree = row['max_abs_diff'], max(1.0, row['max_abs_logit']), row[agreement_key]
    out = []
    if not np.isfinite(diff) or diff > tolerance * scale:
        out.append(f'{where}: max |logit diff| {diff:.3g} > tolerance {tolerance:g} x {scale:.3g}')
    if agree < min_agreement:
        what = 'argmax agreement' if agreement_key == 'argmax_agreement' else 'labels agree on'
        out.append(f'{where}: {what} {100 * agree:.4f}% < {100 * min_agreement:.2f}%')
    return out


def _compare(name: str, outs: Sequence[np.ndarray], refs: Sequence[torch.Tensor], tolerance: float,
             min_agreement: float) -> List[Dict]:
    rows, bad = [], []
    for o, r in zip(outs, refs):
        r = r.float().numpy()
        if o.shape != r.shape:
            bad.append(f'shape {tuple(o.shape)} != PyTorch {tuple(r.shape)}')
            rows.append(dict(shape=list(r.shape), max_abs_diff=None, argmax_agreement=None))
            continue
        row = _measure(o.astype(np.float32), r, o.argmax(1), r.argmax(1), 'argmax_agreement')
        rows.append(dict(shape=list(r.shape), **row))
        print_log(f'{name} vs PyTorch at {list(r.shape)}: max |logit diff| {row["max_abs_diff"]:.3g} (logits up '
                  f'to {row["max_abs_logit"]:.3g}), argmax agreement {100 * row["argmax_agreement"]:.4f}%',
                  logger='current')
        bad += _problems(str(list(r.shape)), row, 'argmax_agreement', tolerance, min_agreement)
    if bad:
        raise ExportVerificationError(f'{name} does not reproduce PyTorch: ' + '; '.join(bad)
                                      + ' (no bundle written)')
    return rows


def verify_onnx(path, inputs: Sequence[torch.Tensor], refs: Sequence[torch.Tensor],
                tolerance: float = DEFAULT_TOLERANCE, min_agreement: float = DEFAULT_MIN_AGREEMENT,
                low_memory: bool = False):
    """Run the saved model in onnxruntime on ``inputs`` and compare with ``refs``.

    Returns ``(rows, session)``; raises ``ExportVerificationError`` past the tolerance.
    """
    from ..deploy.bundle import open_session
    sess = open_session(Path(path), low_memory=low_memory)
    outs = [sess.run(None, {INPUT_NAME: x.numpy()})[0] for x in inputs]
    return _compare(f'onnxruntime ({Path(path).name})', outs, refs, tolerance, min_agreement), sess


def verify_pt2(path, inputs, refs, tolerance=DEFAULT_TOLERANCE, min_agreement=DEFAULT_MIN_AGREEMENT):
    module = torch.export.load(str(path)).module()
    with torch.no_grad():
        outs = [module(x).numpy() for x in inputs]
    return _compare(f'torch.export ({Path(path).name})', outs, refs, tolerance, min_agreement)


def whole_image_shapes(crop: Sequence[int], patch: int) -> List[Tuple[int, int]]:
    """Image shapes for the whole-image check, around the crop ``(ch, cw)``: smaller than the crop,
    a bit larger (sides not multiples of the patch size), 1:6, 6:1, larger than two crops."""
    ch, cw = int(crop[0]), int(crop[1])
    s = max(2 * patch, ch // 2)
    shapes = [(ch * 3 // 5, cw * 7 // 10), (ch + 5, cw * 11 // 8), (s, 6 * s), (6 * s, s),
              (ch * 23 // 10, cw * 21 // 10)]
    return [(h + (h % patch == 0), w + (w % patch == 0)) for h, w in shapes]


def sample_image(h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """A deterministic BGR uint8 test image: smooth colour blobs plus a little noise."""
    import cv2
    low = rng.integers(0, 256, (max(2, h // 24), max(2, w // 24), 3)).astype(np.uint8)
    img = cv2.resize(low, (w, h), interpolation=cv2.INTER_CUBIC).astype(np.int16)
    img += rng.integers(-12, 13, img.shape).astype(np.int16)
    return np.clip(img, 0, 255).astype(np.uint8)


def verify_whole_images(segmentor, bundle_dir, manifest: Dict, session, shapes: Sequence[Tuple[int, int]],
                        tolerance: float = DEFAULT_TOLERANCE, min_agreement: float = DEFAULT_MIN_AGREEMENT,
                        seed: int = 0) -> List[Dict]:
    """Whole images through both paths, as users run them: PyTorch (the config's test pipeline and
    test mode, ``perception.inference.segment``) and the bundle's runtime (``perception.deploy``:
    resize, windows, averaging, resize back). Per image: the logit difference within ``tolerance``
    (relative to ``max(1, max |logit|)``) and the label agreement at least ``min_agreement``; else
    ``ExportVerificationError``."""
    from ..deploy.runtime import Segmenter
    from ..inference import segment
    from ..segmentation.padding import enable_any_input_size
    seg = Segmenter(bundle_dir, manifest, session)
    enable_any_input_size(segmentor)
    saved = segmentor.test_cfg
    if manifest['mode'] == 'slide':  # the window the bundle declares (the config's, or --slide)
        segmentor.test_cfg = ConfigDict(dict(saved or {}, mode='slide', crop_size=tuple(manifest['slide']['crop']),
                                             stride=tuple(manifest['slide']['stride'])))
    try:
        return _compare_whole(segmentor, seg, shapes, tolerance, min_agreement, seed, segment)
    finally:
        segmentor.test_cfg = saved


def _compare_whole(segmentor, seg, shapes, tolerance, min_agreement, seed, segment) -> List[Dict]:
    rng = np.random.default_rng(seed)
    rows, bad = [], []
    for h, w in shapes:
        img = sample_image(h, w, rng)
        ref_label, res = segment(segmentor, img)
        ref = res.seg_logits.data.float().cpu().numpy()
        out = seg.logits(img)
        row = _measure(out, ref, out.argmax(0), ref_label, 'label_agreement')
        rows.append(dict(shape=[h, w], **row))
        print_log(f'whole image {h}x{w}: runtime vs PyTorch max |logit diff| {row["max_abs_diff"]:.3g}, labels '
                  f'agree on {100 * row["label_agreement"]:.4f}% of the pixels', logger='current')
        bad += _problems(f'{h}x{w}', row, 'label_agreement', tolerance, min_agreement)
    if bad:
        raise ExportVerificationError('the bundle does not label whole images as PyTorch does: '
                                      + '; '.join(bad) + ' (no bundle written)')
    return rows
