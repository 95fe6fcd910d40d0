"""Image files: listing, reading as training reads them, encoding (OpenCV, imported where used); arrays
of other types converted to the BGR uint8 both backends segment (``to_bgr_uint8``); the EXIF orientation
tag that OpenCV's decoder applies (``exif_orientation``)."""
import struct
from pathlib import Path
from typing import BinaryIO, List, Optional, Sequence, Tuple, Union

import numpy as np

IMG_EXTS = ('.jpg', '.jpeg', '.png', '.bmp', '.tif', '.tiff', '.webp')
# what OpenCV's colour decoder (mmcv's LoadImageFromFile, read_image) does to pixels stored with EXIF
# orientation tag N to show them upright (JPEG, PNG eXIf, WebP and TIFF alike; tag 1 or none: nothing)
ORIENTATIONS = {2: 'mirrored left-right', 3: 'rotated 180 degrees', 4: 'mirrored top-bottom',
                5: 'transposed (mirrored and rotated 90 degrees)', 6: 'rotated 90 degrees clockwise',
                7: 'transversed (mirrored and rotated 90 degrees)', 8: 'rotated 90 degrees counter-clockwise'}
ACCEPTED_DTYPES = 'uint8 (0-255), uint16 (0-65535, scaled) or float in [0, 1] (scaled)'


def list_images(inputs: Union[str, Sequence[str]]) -> List[str]:
    """Image files of a file, a folder (recursively) or a list of them; a missing path, or a folder
    without images, raises ``FileNotFoundError`` naming it."""
    if isinstance(inputs, (list, tuple)):
        out = []
        for i in inputs:
            out += list_images(i)
        return out
    p = Path(inputs)
    if p.is_dir():
        found = sorted(str(f) for f in p.rglob('*') if f.suffix.lower() in IMG_EXTS)
        if not found:
            raise FileNotFoundError(f'no images ({", ".join(IMG_EXTS)}) in the folder {inputs}')
        return found
    if not p.exists():
        raise FileNotFoundError(f'input not found: {inputs}')
    return [str(p)]


def encode_image(path, arr: np.ndarray) -> bytes:
    import cv2
    ok, buf = cv2.imencode(Path(path).suffix, arr)
    if not ok:
        raise ValueError(f'could not encode {path}')
    return buf.tobytes()


def read_image(path) -> np.ndarray:
    """A BGR uint8 image; unreadable files raise ``ValueError`` naming the file."""
    return read_image_noted(path)[0]


def read_image_noted(path) -> Tuple[np.ndarray, Optional[str]]:
    """``(BGR uint8 image, note)``: decoded as training decodes it (OpenCV's colour mode, what mmcv's
    ``LoadImageFromFile`` uses); ``note`` says what that changed, for the caller to announce: a 16-bit
    image scaled to 8 bits, an alpha channel dropped, the pixels rotated or mirrored as the file's EXIF
    orientation tag says (None when nothing changed meaning)."""
    import cv2
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise ValueError(f'cannot read image {path} (corrupt, truncated or not an image)')
    notes = [n for n in (png_conversion_note(path), orientation_note(path)) if n]
    return img, ', '.join(notes) or None


def png_conversion_note(path) -> Optional[str]:
    """What decoding a PNG as an 8-bit colour image changes (from its header: 26 bytes), or None."""
    with open(path, 'rb') as f:
        head = f.read(26)
    if len(head) < 26 or head[:8] != b'\x89PNG\r\n\x1a\n':
        return None
    changes = []
    if head[24] == 16:
        changes.append('16-bit values scaled to 8 bits')
    if head[25] in (4, 6):
        changes.append('alpha channel dropped')
    return ', '.join(changes) or None


def orientation_note(path) -> Optional[str]:
    """How the decoder turned the stored pixels (EXIF orientation 2..8), or None."""
    tag = exif_orientation(path)
    if tag not in ORIENTATIONS:
        return None
    return f'{ORIENTATIONS[tag]} as its EXIF orientation tag ({tag}) says: the label map is in that orientation'


# ----------------------------------------------------------------------------- EXIF orientation
def exif_orientation(path) -> Optional[int]:
    """The EXIF orientation tag (0x0112) of a JPEG (APP1), PNG (eXIf), WebP (EXIF) or TIFF file, read
    from the raw bytes without decoding the image; None when the file has none (or is another format).
    OpenCV's colour decoder turns the pixels as the tag says (``ORIENTATIONS``); its ``IMREAD_UNCHANGED``
    (how mmseg reads label maps) does not."""
    try:
        with open(path, 'rb', buffering=0) as f:  # a few small reads at known offsets, not the whole file
            head = f.read(12)
            if head[:2] == b'\xff\xd8':
                base = _jpeg_exif(f)
            elif head[:8] == b'\x89PNG\r\n\x1a\n':
                base = _chunk_exif(f, 8, 'png')
            elif head[:4] == b'RIFF' and head[8:12] == b'WEBP':
                base = _chunk_exif(f, 12, 'webp')
            elif head[:4] in (b'II*\x00', b'MM\x00*'):
                base = 0
            else:
                return None
            return None if base is None else _tiff_orientation(f, base)
    except (OSError, struct.error):
        return None


def _jpeg_exif(f: BinaryIO) -> Optional[int]:
    """Offset of the TIFF header in the first ``Exif`` APP1 segment before the image data."""
    pos = 2
    for _ in range(1000):
        f.seek(pos)
        m = f.read(4)
        if len(m) < 4 or m[0] != 0xFF:
            return None
        if m[1] == 0xFF:  # fill byte
            pos += 1
            continue
        if m[1] in (0xD8, 0x01) or 0xD0 <= m[1] <= 0xD7:  # markers without a length
            pos += 2
            continue
        if m[1] in (0xDA, 0xD9):  # image data or end: no EXIF before it
            return None
        length = struct.unpack('>H', m[2:4])[0]
        if m[1] == 0xE1 and f.read(6) == b'Exif\x00\x00':
            return pos + 10
        pos += 2 + length
    return None


def _chunk_exif(f: BinaryIO, pos: int, kind: str) -> Optional[int]:
    """Offset of the TIFF header in a PNG ``eXIf`` or WebP ``EXIF`` chunk (anywhere in the file: OpenCV
    reads an eXIf chunk after the image data too)."""
    for _ in range(1_000_000):
        f.seek(pos)
        h = f.read(8)
        if len(h) < 8:
            return None
        if kind == 'png':
            size, name = struct.unpack('>I', h[:4])[0], h[4:]
            if name == b'eXIf':
                return pos + 8
            if name == b'IEND':
                return None
            pos += 12 + size
        else:
            name, size = h[:4], struct.unpack('<I', h[4:])[0]
            if name == b'EXIF':
                return pos + 8 + (6 if f.read(6) == b'Exif\x00\x00' else 0)
            pos += 8 + size + (size & 1)
    return None


def _tiff_orientation(f: BinaryIO, base: int) -> Optional[int]:
    """Tag 0x0112 of the first IFD of the TIFF structure at ``base``."""
    f.seek(base)
    h = f.read(8)
    order = {b'II': '<', b'MM': '>'}.get(h[:2])
    if len(h) < 8 or order is None or struct.unpack(order + 'H', h[2:4])[0] != 42:
        return None
    f.seek(base + struct.unpack(order + 'I', h[4:8])[0])
    n = f.read(2)
    if len(n) < 2:
        return None
    entries = f.read(12 * min(struct.unpack(order + 'H', n)[0], 4096))
    for i in range(0, len(entries) - 11, 12):
        tag, typ = struct.unpack(order + 'HH', entries[i:i + 4])
        if tag == 0x0112:
            fmt = {3: 'H', 4: 'I', 1: 'B'}.get(typ)
            return struct.unpack_from(order + fmt, entries, i + 8)[0] if fmt else None
    return None


# ----------------------------------------------------------------------------- arrays
def image_noted(image) -> Tuple[np.ndarray, Optional[str]]:
    """``(BGR uint8 image, note)`` of a path (``read_image_noted``; the note names the file) or an array
    (``to_bgr_uint8``): what both backends segment, and what the conversion changed, for the caller to
    announce."""
    if isinstance(image, (str, Path)):
        img, note = read_image_noted(image)
        return img, (f'{image}: {note}' if note else None)
    return to_bgr_uint8(image)


def to_bgr_uint8(image) -> Tuple[np.ndarray, Optional[str]]:
    """``(H x W x 3 uint8 BGR, note)`` of an image array, by its documented range; ``note`` (None when
    nothing changed meaning) says what a conversion did, for the caller to announce.

    Shapes: ``H x W x 3`` BGR; ``H x W`` or ``H x W x 1`` grey (repeated to 3 channels);
    ``H x W x 4`` BGRA (the alpha dropped: noted). Types: uint8 as is; uint16 -> ``value * 255 / 65535``
    rounded (65535 is 257 * 255, so no value falls half-way); float in [0, 1] -> ``value * 255`` rounded
    half up (noted). Anything else raises ``ValueError`` in one line: another dtype (bool, int32, ...),
    floats outside [0, 1], NaN or infinity (naming the range found).
    """
    img = np.asarray(image)
    if img.dtype == object or img.ndim not in (2, 3) or (img.ndim == 3 and img.shape[2] not in (1, 3, 4)):
        raise ValueError(f'expected an H x W x 3 BGR image (or H x W grey, H x W x 4 BGRA), got an array of '
                         f'shape {tuple(img.shape)} and dtype {img.dtype}')
    if img.shape[0] < 1 or img.shape[1] < 1:
        raise ValueError(f'empty image of shape {tuple(img.shape)}')
    notes, dtype = [], img.dtype
    if img.ndim == 2:
        img = img[:, :, None]
    if img.shape[2] == 4:
        img = img[:, :, :3]
        notes.append('the 4th channel (alpha) of an H x W x 4 image was dropped')
    if img.dtype == np.uint8:
        pass
    elif img.dtype == np.uint16:
        hi = int(img.max())
        img = ((img.astype(np.uint32) + 128) // 257).astype(np.uint8)
        notes.append('a uint16 image was converted to uint8 (value * 255 / 65535, rounded)'
                     + (f'; its values are all <= {hi}: if they are 8-bit values, pass it as uint8' if hi <= 255
                        else ''))
    elif np.issubdtype(img.dtype, np.floating):
        x = img.astype(np.float32) if img.dtype.itemsize < 4 else img
        if not np.isfinite(x).all():
            bad = 'NaN' if np.isnan(x).any() else 'infinity'
            raise ValueError(f'a {dtype} image holds {bad}: expected values in [0, 1]')
        lo, hi = float(x.min()), float(x.max())
        if lo < 0 or hi > 1:
            hint = ' (0-255 values: pass them as uint8)' if lo >= 0 and hi <= 255 else ''
            raise ValueError(f'a {dtype} image must hold values in [0, 1], this one holds [{lo:g}, {hi:g}]'
                             f'{hint}')
        img = np.floor(x * 255 + 0.5).astype(np.uint8)
        notes.append(f'a {dtype} image in [0, 1] was converted to uint8 (value * 255, rounded)')
    else:
        hint = ''
        if np.issubdtype(dtype, np.integer) and img.min() >= 0 and img.max() <= 255:
            hint = ' (its values are all in 0-255: pass it as uint8)'
        raise ValueError(f'image dtype {dtype} is not accepted: expected {ACCEPTED_DTYPES}{hint}')
    if img.shape[2] == 1:
        img = np.repeat(img, 3, axis=2)
    return img, '; '.join(notes) or None
