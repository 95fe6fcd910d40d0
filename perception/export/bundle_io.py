"""Bundle folder I/O: refuse to replace what is not a bundle, fsync, swap the finished folder in, and
clean up after an export that was killed."""
import ctypes
import os
import re
import shutil
import uuid
from pathlib import Path
from typing import Callable, List

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


def _exchange(a: Path, b: Path) -> bool:
    """Swap two folders in one step (Linux ``renameat2(RENAME_EXCHANGE)``); False where unsupported."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    return fn(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0


def move_into_place(tmp: Path, out_dir: Path):
    """Rename the finished bundle over ``out_dir``. An existing bundle is exchanged with the new one in
    one step where the OS can (a kill at any moment leaves one complete bundle at ``out_dir``), else
    renamed aside first (``recover_leftovers`` puts it back if a kill falls between the renames);
    then the old one is removed."""
    if out_dir.exists():
        if _exchange(tmp, out_dir):  # tmp now holds the old bundle
            shutil.rmtree(tmp, ignore_errors=True)
            return
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


def recover_leftovers(out_dir: Path, log: Callable[[str], None]) -> List[str]:
    """What a killed export of ``out_dir`` left beside it, and only that (the names this module and
    ``export_model`` make): a bundle renamed aside while no bundle is at ``out_dir`` is put back; the
    half-written ``.NAME.*.tmp`` folders and superseded ``.NAME.old-*`` bundles are removed. Each step
    is logged; returns what was done."""
    parent, name = out_dir.parent, out_dir.name
    if not parent.is_dir():
        return []
    done = []
    olds = sorted((p for p in parent.iterdir() if p.is_dir() and re.fullmatch(rf'\.{re.escape(name)}\.old-[0-9a-f]{{8}}', p.name)),
                  key=lambda p: p.stat().st_mtime)
    if olds and not out_dir.exists() and (olds[-1] / MANIFEST_NAME).is_file():
        os.rename(olds.pop(), out_dir)
        done.append(f'restored the bundle {out_dir} that an interrupted export had moved aside')
    for p in olds:
        shutil.rmtree(p, ignore_errors=True)
        done.append(f'removed {p} (a bundle an interrupted export had replaced)')
    for p in parent.iterdir():
        if p.is_dir() and re.fullmatch(rf'\.{re.escape(name)}\.[A-Za-z0-9_]{{8}}\.tmp', p.name):
            shutil.rmtree(p, ignore_errors=True)
            done.append(f'removed {p} (left by an interrupted export)')
    for msg in done:
        log(msg)
    return done
