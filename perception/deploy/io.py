"""Files in, label PNGs and overlays out (the loop of ``tools/infer.py``, both backends).

What the loop may touch in ``--out``: files it wrote itself, as ``--out/.perception-outputs.json``
records them (``perception.common.files.OutputRecord``: name, size, sha256). A file of an output's
name that the record does not list (a user's ``cat_label.png`` beside ``cat.jpg``), or that changed
since, is refused before anything is written; the files a run wrote are never its inputs (the
``--out`` folder inside an input folder is left out of the listing, and so is every file an earlier
run recorded), so rerunning into one folder gives the same files. One run writes into a folder at a
time (``--out/.perception-outputs.lock``, held while it runs).
"""
import hashlib
import logging
import os
import re
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np

from ..common.files import OUTPUT_RECORD, OutputRecord, lock_output_folder, refuse_not_ours, write_bytes_atomic
from ..common.images import encode_image, list_images, read_image_noted
from .runtime import Segmenter

logger = logging.getLogger(__name__)

SUFFIXES = ('_label.png', '_overlay.jpg')


def _log(msg: str, level: int = logging.INFO):
    logger.log(level, msg)


def _leftover_stem(name: str):
    """The image stem of an output's temporary file (``.STEM_label.png.XXXXXXXX.tmp``), else None."""
    m = re.fullmatch(r'\.(.+)(_label\.png|_overlay\.jpg)\.[A-Za-z0-9_]{8}\.tmp', name)
    return m.group(1) if m else None


def _is_record_leftover(name: str) -> bool:
    """The temporary file of a record write that was interrupted (``atomic_write``'s name)."""
    return re.fullmatch(rf'\.{re.escape(OUTPUT_RECORD)}\.[A-Za-z0-9_]{{8}}\.tmp', name) is not None


def _within(path: str, folder: str) -> bool:
    return os.path.commonpath([path, folder]) == folder


def _few(paths, n: int = 3) -> str:
    names = [Path(p).name for p in paths]
    return ', '.join(names[:n]) + (', ...' if len(names) > n else '')


def plan_outputs(inputs, out_dir, log: Optional[Callable[[str, int], None]] = None) -> Tuple[List[str], List[str]]:
    """``(images, output names)`` of segmenting ``inputs`` into ``out_dir``, checked before anything is
    written: an ``out_dir`` that is a file, no images, two images with one output name, and outputs
    that would replace files this project did not write are refused in one line. Left out of the
    images (and said through ``log``): files under ``out_dir`` when it lies inside an input folder,
    and files an earlier run wrote (listed in their folder's record)."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f'--out {out_dir} is a file: expected a folder for the label maps and overlays')
    out_real = os.path.realpath(out)
    items = [inputs] if isinstance(inputs, (str, os.PathLike)) else list(inputs)
    records: Dict[str, OutputRecord] = {}
    files, under_out, earlier = [], [], []
    for item in items:
        folder = os.path.realpath(item) if os.path.isdir(item) else None
        skip_out = folder is not None and folder != out_real and _within(out_real, folder)
        for f in list_images(str(item)):  # a missing input, a folder without images: refused naming it
            real = os.path.realpath(f)
            if skip_out and _within(real, out_real):
                under_out.append(f)
                continue
            parent = os.path.dirname(os.path.abspath(f))
            rec = records.get(parent) or records.setdefault(parent, OutputRecord(parent))
            if rec.ours(os.path.basename(f)):
                earlier.append(f)
                continue
            files.append(f)
    if log and under_out:
        log(f'left out {len(under_out)} file(s) under --out {out_dir}, inside the input folder '
            f'({_few(under_out)})', logging.INFO)
    if log and earlier:
        log(f'left out {len(earlier)} file(s) that an earlier run wrote (listed in {OUTPUT_RECORD} of their '
            f'folder: {_few(earlier)})', logging.INFO)
    if not files:
        raise FileNotFoundError(f'no images to segment in {", ".join(map(str, items))}: the '
                                f'{len(under_out) + len(earlier)} found are outputs of earlier runs')
    by_stem = {}
    for f in files:
        by_stem.setdefault(Path(f).stem, []).append(f)
    clash = {k: v for k, v in by_stem.items() if len(v) > 1}
    if clash:
        stem, same = next(iter(clash.items()))
        raise ValueError(f'{", ".join(same)} would all write {stem}_label.png / {stem}_overlay.jpg in '
                         f'{out_dir} ({len(clash)} such name(s)): segment them into separate output folders')
    names = [stem + s for stem in by_stem for s in SUFFIXES]
    if out.is_dir():
        refuse_not_ours(records.get(os.path.abspath(out)) or OutputRecord(out), names)
    return files, names


def segment_images(segmenter: Segmenter, inputs, out_dir, alpha: float = 0.5, progress: bool = False,
                   log: Callable[[str, int], None] = _log, tool: str = 'segment_images') -> Dict:
    """``<name>_label.png`` and ``<name>_overlay.jpg`` (image | blend) per image; unreadable images
    are reported by name and skipped. ``segmenter`` is anything with this runtime's
    ``segment(img_bgr, alpha=, side_by_side=) -> (label, overlay)``: the ONNX ``Segmenter`` here, the
    PyTorch segmentor in ``perception.inference`` (one loop, the same files from both backends).
    What it may replace and what it reads: ``plan_outputs`` and the module docstring.
    ``progress``: a tqdm bar when tqdm is installed; ``log(message, level)``: where messages go.

    Returns ``{'written': [...], 'failed': {path: reason}}``.
    """
    files, names = plan_outputs(inputs, out_dir, log)
    out_dir = Path(out_dir)
    lock = lock_output_folder(out_dir, log)
    try:
        return _write_all(segmenter, files, names, out_dir, alpha, progress, log, tool)
    finally:
        lock.release()


def _write_all(segmenter, files, names, out_dir: Path, alpha, progress, log, tool) -> Dict:
    record = OutputRecord(out_dir)
    refuse_not_ours(record, names)  # again, under the lock
    stems = {Path(f).stem for f in files}
    # temporary files of an interrupted run for these outputs or the record (atomic_write's names), and only those
    leftovers = [p for p in out_dir.iterdir() if _leftover_stem(p.name) in stems or _is_record_leftover(p.name)]
    for p in leftovers:
        p.unlink()
    if leftovers:
        log(f'removed {len(leftovers)} temporary file(s) an interrupted run left in {out_dir} '
            f'({_few(leftovers)})', logging.WARNING)
    existed = {n for n in names if (out_dir / n).is_file()}  # ours (refused otherwise)
    record.expect(names, tool)  # a kill from here on leaves these names ours, for the rerun to replace
    done: Dict[str, Tuple[int, str]] = {}
    written, failed = [], {}
    it = files
    if progress and len(files) > 1:
        try:
            from tqdm import tqdm
            it = tqdm(files, desc='segmenting', unit='img')
        except ImportError:
            pass
    try:
        for f in it:
            try:
                img, note = read_image_noted(f)
            except ValueError as e:
                failed[f] = str(e)
                log(f'skipped {f}: {e}', logging.WARNING)
                continue
            if note:  # decoded as training decodes it, but say what that changed
                log(f'{f}: {note} (decoded as training decodes it)', logging.WARNING)
            label, over = segmenter.segment(img, alpha=alpha, side_by_side=True)
            if label.dtype != np.uint8:
                label = label.astype(np.uint16)
            stem = Path(f).stem
            for suffix, arr in zip(SUFFIXES, (label, over)):
                out = out_dir / (stem + suffix)
                data = encode_image(out, arr)
                write_bytes_atomic(out, data)
                done[out.name] = (len(data), hashlib.sha256(data).hexdigest())
                written.append(str(out))
    finally:
        record.settle(done, tool)
    n, again = len(written) // 2, len(existed & set(done))
    msg = (f'segmented {len(files) - len(failed)} of {len(files)} images: wrote {len(written)} files into {out_dir} '
           f'({n} label maps, {n} overlays; {again} of them replaced what an earlier run wrote; listed in '
           f'{OUTPUT_RECORD})')
    if failed:
        msg += f'; {len(failed)} unreadable: ' + ', '.join(Path(p).name for p in failed)
    log(msg, logging.INFO)
    return {'written': written, 'failed': failed}
