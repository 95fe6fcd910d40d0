"""Verification: each exported model against PyTorch on sample shapes (tolerance, argmax agreement)."""
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

import numpy as np
import torch
from mmengine.logging import print_log

from .errors import ExportVerificationError
from .writers import INPUT_NAME


DEFAULT_TOLERANCE = 1e-3  # max |onnx - torch| over max(1, max |torch logit|)


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


def _compare(name: str, outs: Sequence[np.ndarray], refs: Sequence[torch.Tensor], tolerance: float,
             min_agreement: float) -> List[Dict]:
    rows, bad = [], []
    for o, r in zip(outs, refs):
        r = r.float().numpy()
        if o.shape != r.shape:
            bad.append(f'shape {tuple(o.shape)} != PyTorch {tuple(r.shape)}')
            rows.append(dict(shape=list(r.shape), max_abs_diff=None, argmax_agreement=None))
            continue
        diff = float(np.abs(o.astype(np.float32) - r).max())
        scale = max(1.0, float(np.abs(r).max()))
        agree = float((o.argmax(1) == r.argmax(1)).mean())
        rows.append(dict(shape=list(r.shape), max_abs_diff=diff, max_abs_logit=float(np.abs(r).max()),
                         argmax_agreement=agree))
        print_log(f'{name} vs PyTorch at {list(r.shape)}: max |logit diff| {diff:.3g} (logits up to '
                  f'{np.abs(r).max():.3g}), argmax agreement {100 * agree:.4f}%', logger='current')
        if not np.isfinite(diff) or diff > tolerance * scale:
            bad.append(f'{list(r.shape)}: max |logit diff| {diff:.3g} > tolerance {tolerance:g} x {scale:.3g}')
        if agree < min_agreement:
            bad.append(f'{list(r.shape)}: argmax agreement {100 * agree:.4f}% < {100 * min_agreement:.2f}%')
    if bad:
        raise ExportVerificationError(f'{name} does not reproduce PyTorch: ' + '; '.join(bad)
                                      + ' (no bundle written)')
    return rows


def verify_onnx(path, inputs: Sequence[torch.Tensor], refs: Sequence[torch.Tensor],
                tolerance: float = DEFAULT_TOLERANCE, min_agreement: float = DEFAULT_MIN_AGREEMENT):
    """Run the saved model in onnxruntime on ``inputs`` and compare with ``refs``.

    Returns ``(rows, session)``; raises ``ExportVerificationError`` past the tolerance.
    """
    from ..deploy.bundle import open_session
    sess = open_session(Path(path))
    outs = [sess.run(None, {INPUT_NAME: x.numpy()})[0] for x in inputs]
    return _compare(f'onnxruntime ({Path(path).name})', outs, refs, tolerance, min_agreement), sess


def verify_pt2(path, inputs, refs, tolerance=DEFAULT_TOLERANCE, min_agreement=DEFAULT_MIN_AGREEMENT):
    module = torch.export.load(str(path)).module()
    with torch.no_grad():
        outs = [module(x).numpy() for x in inputs]
    return _compare(f'torch.export ({Path(path).name})', outs, refs, tolerance, min_agreement)
