"""Files in, label PNGs and overlays out (the ``--backend onnx`` side of ``tools/infer.py``)."""
import logging
import re
from pathlib import Path
from typing import Callable, Dict

import numpy as np

from ..common.files import write_bytes_atomic
from ..common.images import encode_image, list_images, read_image_noted
from .runtime import Segmenter

logger = logging.getLogger(__name__)

def _log(msg: str, level: int = logging.INFO):
    logger.log(level, msg)


def _leftover_stem(name: str):
    """The image stem of an output's temporary file (``.STEM_label.png.XXXXXXXX.tmp``), else None."""
    m = re.fullmatch(r'\.(.+)(_label\.png|_overlay\.jpg)\.[A-Za-z0-9_]{8}\.tmp', name)
    return m.group(1) if m else None


def segment_images(segmenter: Segmenter, inputs, out_dir, alpha: float = 0.5, progress: bool = False,
                   log: Callable[[str, int], None] = _log) -> Dict:
    """``<name>_label.png`` and ``<name>_overlay.jpg`` (image | blend) per image; unreadable images
    are reported by name and skipped. ``segmenter`` is anything with this runtime's
    ``segment(img_bgr, alpha=, side_by_side=) -> (label, overlay)``: the ONNX ``Segmenter`` here, the
    PyTorch segmentor in ``perception.inference`` (one loop, the same files from both backends).
    ``progress``: a tqdm bar when tqdm is installed; ``log(message, level)``: where messages go.

    Returns ``{'written': [...], 'failed': {path: reason}}``.
    """
    files = list_images(inputs)
    by_stem = {}
    for f in files:
        by_stem.setdefault(Path(f).stem, []).append(f)
    clash = {k: v for k, v in by_stem.items() if len(v) > 1}
    if clash:
        stem, same = next(iter(clash.items()))
        raise ValueError(f'{", ".join(same)} would all write {stem}_label.png / {stem}_overlay.jpg in '
                         f'{out_dir} ({len(clash)} such name(s)): segment them into separate output folders')
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise NotADirectoryError(f'--out {out_dir} is a file: expected a folder for the label maps and overlays')
    out_dir.mkdir(parents=True, exist_ok=True)
    # temporary files of an interrupted run for these outputs (atomic_write's names), and only those
    leftovers = [p for p in out_dir.iterdir() if _leftover_stem(p.name) in by_stem]
    for p in leftovers:
        p.unlink()
    if leftovers:
        log(f'removed {len(leftovers)} temporary file(s) an interrupted run left in {out_dir} '
            f'({", ".join(p.name for p in leftovers[:3])}{", ..." if len(leftovers) > 3 else ""})', logging.WARNING)
    written, failed = [], {}
    it = files
    if progress and len(files) > 1:
        try:
            from tqdm import tqdm
            it = tqdm(files, desc='segmenting', unit='img')
        except ImportError:
            pass
    for f in it:
        try:
            img, note = read_image_noted(f)
        except ValueError as e:
            failed[f] = str(e)
            log(f'skipped {f}: {e}', logging.WARNING)
            continue
        if note:  # decoded as training decodes it, but say what that changed
            log(f'{f}: {note} (read as an 8-bit colour image, as training reads images)', logging.WARNING)
        label, over = segmenter.segment(img, alpha=alpha, side_by_side=True)
        if label.dtype != np.uint8:
            label = label.astype(np.uint16)
        stem = Path(f).stem
        for suffix, arr in (('_label.png', label), ('_overlay.jpg', over)):
            out = out_dir / (stem + suffix)
            write_bytes_atomic(out, encode_image(out, arr))
            written.append(str(out))
    msg = f'segmented {len(files) - len(failed)} of {len(files)} images into {out_dir}'
    if failed:
        msg += f'; {len(failed)} unreadable: ' + ', '.join(Path(p).name for p in failed)
    log(msg, logging.INFO)
    return {'written': written, 'failed': failed}
