"""Bundle folder I/O: refuse to replace what is not a bundle an export wrote, fsync, swap the finished
folder in, and clean up after an export that was killed - removing only folders an export made.

A folder is one of ours when its ``manifest.json`` says so (``format`` 'perception-segmentation-bundle'
with a ``version``, ``model_id`` and ``files``) and it holds nothing but the manifest and the files the
manifest lists. An export folder still being written holds the marker ``IN_PROGRESS`` instead (until its
manifest is complete). Anything else - another program's folder with a ``manifest.json``, a manifest
that is not JSON, a bundle with files a user added - is never replaced, removed or moved."""
import ctypes
import json
import logging
import os
import re
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Callable, List, Optional

from ..deploy.bundle import BUNDLE_FORMAT, MANIFEST_NAME
from .errors import ExportError

IN_PROGRESS = '.perception-export-in-progress'  # in a temporary export folder until its manifest is written
_SHOWN = 5  # extra files named in a refusal

logger = logging.getLogger(__name__)


def _names(names: List[str]) -> str:
    more = f' and {len(names) - _SHOWN} more' if len(names) > _SHOWN else ''
    return ', '.join(names[:_SHOWN]) + more


def not_ours(d: Path) -> Optional[str]:
    """None when the folder ``d`` is a bundle an export wrote and holds nothing else; otherwise why not
    (one line: no manifest, a manifest that is not JSON or not ours, or the files it does not list)."""
    path = d / MANIFEST_NAME
    if not path.is_file() or path.is_symlink():
        return f'it holds no {MANIFEST_NAME}'
    try:
        m = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as e:
        return f'its {MANIFEST_NAME} is not JSON ({" ".join(str(e).split())})'
    if not isinstance(m, dict):
        return f'its {MANIFEST_NAME} is not a JSON object'
    if m.get('format') != BUNDLE_FORMAT:
        fmt = repr(m.get('format'))
        return (f'its {MANIFEST_NAME} is not a perception bundle manifest (format '
                f'{fmt if len(fmt) <= 60 else fmt[:57] + "..."}, expected {BUNDLE_FORMAT!r})')
    files = m.get('files')
    for key, ok in (('version', isinstance(m.get('version'), int)),
                    ('model_id', isinstance(m.get('model_id'), str) and m.get('model_id')),
                    ('files', isinstance(files, dict))):
        if not ok:
            return f'its {MANIFEST_NAME} has format {BUNDLE_FORMAT!r} but no valid {key!r}'
    bad = [n for n in files if not isinstance(n, str) or n in ('', '.', '..') or '/' in n or '\0' in n]
    if bad:
        return f'its {MANIFEST_NAME} lists file(s) outside the folder ({_names([repr(n) for n in bad])})'
    extra = []
    for entry in sorted(os.scandir(d), key=lambda e: e.name):
        if entry.name == MANIFEST_NAME:
            continue
        if entry.name not in files or entry.is_symlink() or not entry.is_file():
            extra.append(entry.name + ('/' if entry.is_dir(follow_symlinks=False) else ''))
    if extra:
        return f'it also holds {len(extra)} file(s) its {MANIFEST_NAME} does not list ({_names(extra)})'
    return None


def _check_parents(out_dir: Path):
    for p in out_dir.parents:
        if os.path.lexists(p):
            if not p.is_dir():
                raise ExportError(f'--out {out_dir}: {p} is a file, not a folder')
            return


def prepare_out(out_dir: Path):
    """Refuse, before any work, an ``out_dir`` the export must not replace: a file, a symbolic link, or a
    non-empty folder that is not a bundle an export wrote (``not_ours``). A missing or empty folder is
    fine (an empty one is replaced by the bundle)."""
    _check_parents(out_dir)
    if out_dir.is_symlink():
        raise ExportError(f'--out {out_dir} is a symbolic link (to {os.readlink(out_dir)}): refusing to replace '
                          'it; give the folder itself')
    if not out_dir.exists():
        return
    if not out_dir.is_dir():
        raise ExportError(f'--out {out_dir} is a file, not a bundle folder: refusing to replace it')
    if not any(out_dir.iterdir()):
        return
    reason = not_ours(out_dir)
    if reason is None:
        return
    if reason.startswith('it also holds'):
        raise ExportError(f'--out {out_dir} is an export bundle, but {reason}: refusing to replace it and '
                          'delete them; move them out of the folder, or choose another --out')
    raise ExportError(f'--out {out_dir} exists and is not an export bundle: {reason}; refusing to replace it, '
                      'choose another --out')


def make_tmp(out_dir: Path) -> Path:
    """The temporary folder ``.NAME.XXXXXXXX.tmp`` beside ``out_dir`` that the export writes into, marked
    ``IN_PROGRESS`` (so that only folders an export made are ever cleaned up)."""
    tmp = Path(tempfile.mkdtemp(prefix=f'.{out_dir.name}.', suffix='.tmp', dir=out_dir.parent))
    (tmp / IN_PROGRESS).write_text('a perception export writes this folder; a later export removes it if this '
                                   'one was interrupted\n')
    return tmp


def seal(tmp: Path):
    """The bundle in ``tmp`` is complete (its manifest written): drop the in-progress marker."""
    (tmp / IN_PROGRESS).unlink()


def _marked(d: Path) -> bool:
    return (d / IN_PROGRESS).is_file() and not (d / IN_PROGRESS).is_symlink()


def made_by_export(d: Path) -> Optional[str]:
    """None when an export made the folder ``d``: empty, marked ``IN_PROGRESS``, or a bundle holding only
    its manifest and listed files (``not_ours``); otherwise why not."""
    if d.is_symlink() or not d.is_dir():
        return 'not a folder'
    if _marked(d) or not any(d.iterdir()):
        return None
    return not_ours(d)


def remove_own(d: Path) -> Optional[str]:
    """Remove the folder ``d`` if an export made it (``made_by_export``; a bundle's manifest and listed
    files are unlinked one by one, then the folder: nothing else goes); None when removed, otherwise why
    it was kept."""
    why = made_by_export(d)
    if why is not None:
        return why
    try:
        if _marked(d):
            shutil.rmtree(d)
            return None
        if (d / MANIFEST_NAME).is_file():
            for name in [*json.loads((d / MANIFEST_NAME).read_text())['files'], MANIFEST_NAME]:
                if (d / name).is_file() and not (d / name).is_symlink():
                    os.unlink(d / name)
        os.rmdir(d)
    except OSError as e:
        return f'cannot remove it ({" ".join(str(e).split())})'
    return None


def discard(tmp: Path):
    """Remove an export's temporary folder after a failure (kept, with a warning, in the one case where
    it is no longer ours: it holds a replaced folder that changed during the swap)."""
    why = remove_own(tmp)
    if why is not None:
        logger.warning('kept %s: %s', tmp, why)


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
    """Rename the finished bundle over ``out_dir``, which is checked again first (``prepare_out``: it may
    have changed during the export). An existing bundle (or empty folder) is exchanged with the new one
    in one step where the OS can (a kill at any moment leaves one complete bundle at ``out_dir``), else
    renamed aside first (``recover_leftovers`` puts it back if a kill falls between the renames); then
    the old one is removed with ``remove_own`` (its listed files only)."""
    prepare_out(out_dir)
    if os.path.lexists(out_dir):
        if _exchange(tmp, out_dir):  # tmp now holds the old bundle
            old = tmp
        else:
            old = out_dir.parent / f'.{out_dir.name}.old-{uuid.uuid4().hex[:8]}'
            os.rename(out_dir, old)
            try:
                os.rename(tmp, out_dir)
            except BaseException:
                os.rename(old, out_dir)
                raise
        why = remove_own(old)
        if why is not None:
            logger.warning('kept the replaced folder %s (it was %s): %s', old, out_dir, why)
    else:
        os.rename(tmp, out_dir)


def recover_leftovers(out_dir: Path, log: Callable[[str], None]) -> List[str]:
    """What a killed export of ``out_dir`` left beside it, and only that: among the names this module
    makes (``.NAME.old-XXXXXXXX``, ``.NAME.XXXXXXXX.tmp``), the folders an export made (``remove_own``'s
    rule: empty, marked in progress, or a bundle with nothing else). A bundle renamed aside while no
    bundle is at ``out_dir`` is put back; the other such folders are removed. A folder of one of those
    names that is not ours is left alone, and the log says why. Each step is logged; returns what was
    done."""
    parent, name = out_dir.parent, out_dir.name
    if not parent.is_dir():
        return []
    done, kept = [], []

    def own(pattern):
        found = []
        for p in parent.iterdir():
            if re.fullmatch(pattern, p.name) and p.is_dir() and not p.is_symlink():
                why = made_by_export(p)
                if why is None:
                    found.append(p)
                else:
                    kept.append(f'left {p} alone: not a folder an export made ({why})')
        return found
    olds = sorted(own(rf'\.{re.escape(name)}\.old-[0-9a-f]{{8}}'), key=lambda p: p.stat().st_mtime)
    bundles = [p for p in olds if (p / MANIFEST_NAME).is_file() and not _marked(p)]
    if bundles and not os.path.lexists(out_dir):
        os.rename(bundles[-1], out_dir)
        olds.remove(bundles[-1])
        done.append(f'restored the bundle {out_dir} that an interrupted export had moved aside')
    for p in olds:
        if remove_own(p) is None:
            done.append(f'removed {p} (a bundle an interrupted export had replaced)')
    for p in own(rf'\.{re.escape(name)}\.[A-Za-z0-9_]{{8}}\.tmp'):
        if remove_own(p) is None:
            done.append(f'removed {p} (left by an interrupted export)')
    for msg in kept + done:
        log(msg)
    return done
