"""Bundle folder I/O: refuse to replace what is not a bundle, fsync, swap the finished folder in."""
import os
import shutil
import uuid
from pathlib import Path

from ..deploy.bundle import MANIFEST_NAME
from .errors import ExportError


def prepare_out(out_dir: Path):
    if out_dir.exists():
        if not out_dir.is_dir():
            raise ExportError(f'--out {out_dir} is a file, not a bundle folder')
        if any(out_dir.iterdir()) and not (out_dir / MANIFEST_NAME).is_file():
            raise ExportError(f'--out {out_dir} exists, is not empty and is not an export bundle (no '
                              f'{MANIFEST_NAME}): refusing to replace it')


def finish_tree(d: Path):
    """fsync every file; give the folder and files the usual permissions (mkdtemp/mkstemp make them
    private)."""
    mask = os.umask(0)
    os.umask(mask)
    for f in d.iterdir():
        if f.is_file():
            with open(f, 'rb') as fh:
                os.fsync(fh.fileno())
            os.chmod(f, 0o666 & ~mask)
    os.chmod(d, 0o777 & ~mask)


def move_into_place(tmp: Path, out_dir: Path):
    """Rename the finished bundle over ``out_dir``; an existing bundle is swapped out, then removed."""
    if out_dir.exists():
        old = out_dir.parent / f'.{out_dir.name}.old-{uuid.uuid4().hex[:8]}'
        os.rename(out_dir, old)
        try:
            os.rename(tmp, out_dir)
        except BaseException:
            os.rename(old, out_dir)
            raise
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.rename(tmp, out_dir)
