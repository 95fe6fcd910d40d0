"""File utilities with no dependency beyond the standard library: the one home of the atomic writer
and the sha256 recipes."""
import contextlib
import hashlib
import os
import tempfile
from pathlib import Path
from typing import Optional


@contextlib.contextmanager
def atomic_write(path):
    """Yield a temporary path next to ``path``; on success it is fsynced and replaces ``path``
    atomically (a kill at any moment leaves the old file or the new one, never a partial one), on
    error it is removed and ``path`` is untouched. The file gets the mode a plain ``open`` would give."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f'.{path.name}.', suffix='.tmp', dir=path.parent)
    os.close(fd)
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600 files
        yield Path(tmp)
        with open(tmp, 'rb+') as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_bytes_atomic(path, data: bytes):
    """Write ``data`` to ``path`` through :func:`atomic_write`."""
    with atomic_write(path) as tmp:
        tmp.write_bytes(data)


def sha256_file(path, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, 'rb') as f:
        while True:
            b = f.read(chunk)
            if not b:
                break
            h.update(b)
    return h.hexdigest()


def sha256_path(path) -> Optional[str]:
    """sha256 of a file, or of a folder's files (relative names and contents' digests, sorted);
    None for a path that does not exist."""
    if path is None:
        return None
    path = Path(path)
    if path.is_file():
        return sha256_file(path)
    if path.is_dir():
        h = hashlib.sha256()
        for f in sorted(q for q in path.rglob('*') if q.is_file()):
            h.update(str(f.relative_to(path)).encode() + b'\0' + sha256_file(f).encode())
        return h.hexdigest()
    return None
