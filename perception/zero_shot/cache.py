"""Text-embedding caches that cannot lie.

A cache file holds the embeddings with the manifest of everything they were computed from: the
weights (sha256 of every checkpoint file's content), the tokenizer file (sha256), the texts (class
names and templates, or captions: sha256 of each list), the dtype the text tower ran in and the code
version. The file is named by a digest of that manifest and its stored manifest is compared in full
when read, so a cache made from anything else is never found, and a file whose content disagrees with
its name is refused. When no cache matches, the nearest one for the same dataset is named with what
differs, and the embeddings are rebuilt (announced) and written atomically.

Why content hashes, not names + sizes + mtimes: a file rewritten in place with the same size (a
re-download, a conversion) keeps its name and size, and its mtime can be set back (``touch -d``,
``cp -p``, ``rsync -t``), so such a key can lie. Hashing the 28 GB of the 14B takes minutes, so each
file's digest is remembered in ``CACHE_DIR/file_digests.json`` under its device, inode, size, mtime and
**ctime**: any write to a file changes its ctime, which no user tool can set back, and a copy is a new
inode, so a remembered digest is only reused for the very same unchanged file.
"""
import hashlib
import json
import os
import os.path as osp
from typing import Callable, Dict, Optional, Sequence

from ..common.errors import InputError
from ..common.files import atomic_write, sha256_file

CACHE_VERSION = 1
MEMO = 'file_digests.json'
WEIGHT_SUFFIXES = ('.safetensors', '.safetensors.index.json', '.bin', '.bin.index.json', '.pth', '.pt')


class CacheMismatchError(InputError, ValueError):
    """A cache file whose stored manifest does not match what it is named for."""


def weight_files(path) -> Dict[str, str]:
    """``{name: path}`` of the files a checkpoint consists of: a file itself, or a folder's ``config.json``
    and weight files (an index file stands for its folder)."""
    path = str(path)
    if osp.isfile(path) and path.endswith('.index.json'):
        path = osp.dirname(osp.abspath(path))
    if osp.isfile(path):
        return {osp.basename(path): path}
    if not osp.isdir(path):
        raise InputError(f'{path}: no such checkpoint file or folder')
    files = {f: osp.join(path, f) for f in sorted(os.listdir(path))
             if (f == 'config.json' or f.endswith(WEIGHT_SUFFIXES)) and osp.isfile(osp.join(path, f))}
    if not files:
        raise InputError(f'{path}: no config.json or weight files ({", ".join(WEIGHT_SUFFIXES)}) in this folder')
    return files


def _stat_key(path: str) -> list:
    st = os.stat(path)
    return [st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns]


def file_digest(path: str, memo_dir: Optional[str] = None) -> str:
    """sha256 of ``path``'s content, remembered in ``memo_dir`` for the same unchanged file (see the module
    docstring for why the stat key cannot lie)."""
    real = osp.realpath(path)
    memo_path = osp.join(memo_dir, MEMO) if memo_dir else None
    memo = {}
    if memo_path and osp.isfile(memo_path):
        try:
            with open(memo_path) as f:
                memo = json.load(f)
        except (OSError, ValueError):
            memo = {}  # an unreadable memo only costs a re-hash
    key = _stat_key(real)
    hit = memo.get(real)
    if isinstance(hit, dict) and hit.get('stat') == key and isinstance(hit.get('sha256'), str):
        return hit['sha256']
    digest = sha256_file(real)
    if memo_path and _stat_key(real) == key:  # unchanged while it was read
        memo[real] = {'stat': key, 'sha256': digest}
        with atomic_write(memo_path) as tmp:
            tmp.write_text(json.dumps(memo, indent=1))
    return digest


def texts_digest(texts: Sequence[str]) -> str:
    return hashlib.sha256(json.dumps(list(texts), ensure_ascii=False).encode('utf-8')).hexdigest()


class TextEmbeddingCache:
    """Embeddings of texts under ``cache_dir``, keyed by the weights, the tokenizer, the texts and the dtype.

    ``get(kind, label, texts, build)``: ``texts`` a dict of named string lists (e.g. ``classnames`` and
    ``templates``); ``build()`` computes the tensor when no cache matches. ``cache_dir=None``: no caching."""

    def __init__(self, cache_dir: Optional[str], weights, tokenizer_file: str, dtype: str):
        self.dir = cache_dir
        self._weights, self._tokenizer, self._dtype = weights, tokenizer_file, str(dtype)
        self._base = None

    def base_manifest(self) -> dict:
        if self._base is None:
            import perception
            files = weight_files(self._weights)
            self._base = {
                'version': CACHE_VERSION, 'perception': perception.__version__, 'dtype': self._dtype,
                'weights': {name: file_digest(p, self.dir) for name, p in files.items()},
                'tokenizer': file_digest(self._tokenizer, self.dir),
            }
        return self._base

    def manifest(self, kind: str, texts: Dict[str, Sequence[str]]) -> dict:
        return dict(self.base_manifest(), kind=kind,
                    texts={k: {'count': len(v), 'sha256': texts_digest(v)} for k, v in sorted(texts.items())})

    def path_for(self, manifest: dict) -> str:
        digest = hashlib.sha256(json.dumps(manifest, sort_keys=True).encode()).hexdigest()[:24]
        return osp.join(self.dir, f"{manifest['kind']}-{digest}.pt")

    def _others(self, manifest: dict, label: str):
        """(path, differing fields) of this dir's caches of the same kind and label."""
        out = []
        for f in sorted(os.listdir(self.dir)) if osp.isdir(self.dir) else ():
            if f.startswith(manifest['kind'] + '-') and f.endswith('.json'):
                try:
                    with open(osp.join(self.dir, f)) as fh:
                        other = json.load(fh)
                except (OSError, ValueError):
                    continue
                if other.get('label') == label:
                    m = other.get('manifest', {})
                    diff = sorted(k for k in set(m) | set(manifest) if m.get(k) != manifest.get(k))
                    diff = [f'texts.{t}' for t in sorted(set(m.get('texts', {})) | set(manifest['texts']))
                            if m.get('texts', {}).get(t) != manifest['texts'].get(t)] + [d for d in diff if d != 'texts']
                    out.append((osp.join(self.dir, f[:-5] + '.pt'), diff))
        return out

    def get(self, kind: str, label: str, texts: Dict[str, Sequence[str]], build: Callable):
        import torch
        from mmengine.logging import print_log
        if self.dir is None:
            return build()
        manifest = self.manifest(kind, texts)
        path = self.path_for(manifest)
        if osp.isfile(path):
            stored = torch.load(path, map_location='cpu', weights_only=True)
            if not isinstance(stored, dict) or stored.get('manifest') != manifest:
                raise CacheMismatchError(f'{path}: this text-embedding cache does not hold what its name says (a '
                                         'file changed or copied by hand); delete it and run again')
            print_log(f'text embeddings of {label} ({kind}) read from the cache {path}', logger='current')
            return stored['embeddings']
        others = self._others(manifest, label)
        why = '; '.join(f'{p} was made with other {", ".join(d)}' for p, d in others) or 'none made yet'
        print_log(f'text embeddings of {label} ({kind}): no cache made with these weights, tokenizer and texts '
                  f'({why}): computing them', logger='current')
        emb = build()
        with atomic_write(path) as tmp:
            torch.save({'manifest': manifest, 'embeddings': emb.contiguous()}, tmp)
        with atomic_write(path[:-3] + '.json') as tmp:
            tmp.write_text(json.dumps({'label': label, 'manifest': manifest}, indent=1))
        print_log(f'text embeddings of {label} cached in {path}', logger='current')
        return emb
