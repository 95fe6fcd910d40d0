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


# ---- what a tool wrote into an output folder, and one run per folder ----

OUTPUT_RECORD = '.perception-outputs.json'
OUTPUT_LOCK = '.perception-outputs.lock'  # held (``FileLock``) by the one run writing into the folder
_RECORD_FORMAT = 'perception-outputs'


class OutputRecord:
    """The files this project's tools wrote into ``folder``, kept in ``folder/.perception-outputs.json``
    (written atomically): ``{name: {size, sha256, tool}}``, or ``{pending: true, tool}`` for a name a
    run is about to write. A file is *ours* when the record lists it with its current size and sha256,
    or as pending (a run that was interrupted wrote it, or had not yet): only ours may be replaced, and
    ours are not inputs. A record that does not read is refused naming it (``ValueError``)."""

    def __init__(self, folder):
        import json
        self.folder = Path(folder)
        self.path = self.folder / OUTPUT_RECORD
        self.files = {}
        if self.path.is_file():
            try:
                doc = json.loads(self.path.read_text())
                ok = (isinstance(doc, dict) and doc.get('format') == _RECORD_FORMAT
                      and isinstance(doc.get('files'), dict))
            except (ValueError, UnicodeDecodeError):
                ok = False
            if not ok:
                raise ValueError(f'{self.path} is not a record of the files this project wrote (it was changed?): '
                                 'remove it; the files in that folder then count as not written by us')
            self.files = doc['files']

    def ours(self, name: str) -> bool:
        e, p = self.files.get(name), self.folder / name
        if not isinstance(e, dict) or not p.is_file() or p.is_symlink():
            return False
        return bool(e.get('pending')) or (p.stat().st_size == e.get('size') and sha256_file(p) == e.get('sha256'))

    def not_ours(self, names):
        """The names among ``names`` that exist in the folder and are not ours (sorted)."""
        return sorted(n for n in set(names) if os.path.lexists(self.folder / n) and not self.ours(n))

    def expect(self, names, tool: str):
        """Mark ``names`` pending before they are written (a kill then leaves them ours)."""
        for n in names:
            self.files[n] = {'pending': True, 'tool': tool}
        self._save()

    def settle(self, written=None, tool: str = ''):
        """Record ``written`` (``{name: (size, sha256)}``), hash what pending names hold, drop names
        whose file is gone, and save."""
        for n, (size, digest) in (written or {}).items():
            self.files[n] = {'size': size, 'sha256': digest, 'tool': tool}
        for n, e in list(self.files.items()):
            p = self.folder / n
            if not p.is_file():
                del self.files[n]
            elif e.get('pending'):
                self.files[n] = {'size': p.stat().st_size, 'sha256': sha256_file(p), 'tool': e.get('tool', tool)}
        self._save()

    def _save(self):
        import json
        doc = {'format': _RECORD_FORMAT, 'version': 1, 'files': dict(sorted(self.files.items()))}
        write_bytes_atomic(self.path, (json.dumps(doc, indent=1) + '\n').encode())


def refuse_not_ours(record: 'OutputRecord', names, flag: str = '--out'):
    """``FileExistsError`` in one line when files of ``names`` exist in the record's folder and are not
    ours: writing would replace them."""
    foreign = record.not_ours(names)
    if foreign:
        shown = ', '.join(foreign[:3]) + (f' and {len(foreign) - 3} more' if len(foreign) > 3 else '')
        raise FileExistsError(f'{flag} {record.folder} holds {shown}, which this project did not write (not in '
                              f'{OUTPUT_RECORD}, or changed since): writing would replace '
                              f'{"it" if len(foreign) == 1 else "them"}; move {"it" if len(foreign) == 1 else "them"} '
                              f'away or choose another {flag}')


class LockHeld(OSError):
    """Another live process holds the lock; ``holder``: what it wrote into the lock file (may be {})."""

    def __init__(self, path, holder: dict, message: Optional[str] = None):
        super().__init__(message or f'{path} is held by {describe_holder(holder)}')
        self.path, self.holder = path, holder


def describe_holder(holder: dict) -> str:
    """``pid P on HOST, started T: COMMAND`` from a lock file's content."""
    if not holder:
        return 'another process (its details did not read)'
    cmd = str(holder.get('command', '?'))
    cmd = cmd if len(cmd) <= 240 else cmd[:237] + '...'
    return f'pid {holder.get("pid", "?")} on {holder.get("host", "?")}, started {holder.get("started", "?")}: {cmd}'


def lock_owner_info() -> dict:
    """What a lock file says about this process: pid, host, start time, command line."""
    import shlex
    import socket
    import sys
    import time
    return {'pid': os.getpid(), 'host': socket.gethostname(), 'started': time.strftime('%Y-%m-%d %H:%M:%S %z'),
            'command': ' '.join(shlex.quote(a) for a in [os.path.basename(sys.executable)] + sys.argv)}


class FileLock:
    """An exclusive ``fcntl.flock`` on ``path`` (created if missing) held until :meth:`release` or the
    process ends (the OS frees it when the process dies, ``kill -9`` included). The file holds the
    holder's :func:`lock_owner_info` as JSON. After :meth:`acquire`: ``stale`` is what an earlier holder
    wrote when the file was there but no process held it (that run was killed), else None;
    ``unsupported`` names why no lock could be taken (no ``fcntl``, a filesystem without flock), else
    None. A live holder raises :class:`LockHeld`. :meth:`release` removes the file, then frees it."""

    def __init__(self, path):
        self.path = Path(path)
        self.fd = None
        self.stale = None
        self.unsupported = None

    def acquire(self, info: Optional[dict] = None) -> 'FileLock':
        import errno
        import json
        try:
            import fcntl
        except ImportError:
            self.unsupported = 'this platform has no fcntl.flock'
            return self
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as e:
                if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    holder = _read_holder(fd, wait=True)
                    os.close(fd)
                    raise LockHeld(self.path, holder) from None
                os.close(fd)
                self.unsupported = f'flock failed on {self.path}: {e.strerror}'
                return self
            try:  # the file we locked is still the one at path (a holder removes it on release)
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        self.stale = _read_holder(fd, wait=False) if os.fstat(fd).st_size else None
        data = json.dumps(info if info is not None else lock_owner_info()).encode()
        os.ftruncate(fd, 0)
        os.pwrite(fd, data, 0)
        os.fsync(fd)
        self.fd = fd
        return self

    def release(self):
        if self.fd is None:
            return
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)  # while still held: whoever opened it before retries on the new file
        os.close(self.fd)
        self.fd = None

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()


def _read_holder(fd: int, wait: bool) -> dict:
    """The JSON a lock holder wrote (a holder that just took the lock may still be writing: retried for
    up to a second when ``wait``); {} when it does not read."""
    import json
    import time
    for _ in range(20 if wait else 1):
        try:
            raw = os.pread(fd, 1 << 16, 0)
            doc = json.loads(raw.decode())
            if isinstance(doc, dict):
                return doc
        except (OSError, ValueError, UnicodeDecodeError):
            pass
        if wait:
            time.sleep(0.05)
    return {}


def take_lock(path, refusal, log, second_run: str, stale) -> FileLock:
    """The one policy of the run locks: ``FileLock(path)`` acquired, a live holder refused with the
    exception ``refusal(e)`` makes of its ``LockHeld``; ``log(message, 30)`` says when no lock can be
    taken (``second_run``: what then would not be stopped) and when a lock nobody held (a killed run)
    was replaced (``stale(description of that run)``)."""
    lock = FileLock(path)
    try:
        lock.acquire()
    except LockHeld as e:
        raise refusal(e) from None
    if lock.unsupported:
        log(f'{lock.unsupported}: {second_run} at the same time would not be stopped', 30)
    if lock.stale is not None:
        log(stale(describe_holder(lock.stale)), 30)
    return lock


def lock_output_folder(folder, log, flag: str = '--out') -> FileLock:
    """Take ``folder/.perception-outputs.lock`` for one run writing into ``folder`` (created if missing):
    a second run is refused in one line naming the first (``LockHeld``); a lock nobody holds (a killed
    run) is replaced and ``log(message, 30)`` says so, as it says when no lock can be taken."""
    Path(folder).mkdir(parents=True, exist_ok=True)
    return take_lock(
        Path(folder) / OUTPUT_LOCK,
        lambda e: LockHeld(e.path, e.holder, f'{flag} {folder} is being written by another run '
                                             f'({describe_holder(e.holder)}): wait for it to end or choose another '
                                             f'{flag}'),
        log, f'a second run into {folder}',
        lambda who: f'replaced the lock of a run into {folder} that ended without releasing it ({who})')
