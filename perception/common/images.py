"""Image files: listing, reading as training reads them, encoding (OpenCV, imported where used)."""
from pathlib import Path
from typing import List, Optional, Sequence, Tuple, Union

import numpy as np

IMG_EXTS = ('.jpg', '.jpeg', '.png', '.bmp', '.tif', '.tiff', '.webp')


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
    image scaled to 8 bits, an alpha channel dropped (None when nothing changed meaning)."""
    import cv2
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise ValueError(f'cannot read image {path} (corrupt, truncated or not an image)')
    return img, png_conversion_note(path)


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
