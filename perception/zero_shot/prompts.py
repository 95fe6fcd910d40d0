"""Class names and prompt templates: the files shipped with the package and the user's own.

Shipped (``perception/zero_shot/data/``, copied verbatim from the release's
``clip_benchmark/datasets/*_classnames.json`` and ``*_zeroshot_classification_templates.json``, key
``imagenet1k``): the OpenAI ImageNet class names and 80 templates (English), the release's Chinese,
Japanese, Arabic and Italian class names and templates, the 1000 ImageNet wnids in class-index order,
and the 200-wnid subsets of ImageNet-A and ImageNet-R (clip_benchmark's ``datasets/builder.py``).

A file holds one entry per line, UTF-8. Only the line break is removed: other whitespace is kept,
because the release uses its strings verbatim (a few Arabic names begin or end with a space, and the
tokenizer sees it). An empty line, a duplicate, or a template without ``{c}`` is refused in one line;
the release's own lists hold duplicates (OpenAI's names 'missile' and 'sunglasses' twice each; a few
Chinese templates twice), which are kept as published and announced once.
"""
import os.path as osp
from typing import List, Optional

from ..common.errors import InputError

DATA_DIR = osp.join(osp.dirname(osp.abspath(__file__)), 'data')
#: ISO 639-1 code -> the release's file prefix (it calls Chinese 'cn' and Japanese 'jp')
LANGUAGES = {'en': 'en', 'zh': 'cn', 'ja': 'jp', 'ar': 'ar', 'it': 'it'}
SUBSETS = {None: 'imagenet_wnids.txt', 'imagenet-a': 'imagenet_a_wnids.txt', 'imagenet-r': 'imagenet_r_wnids.txt'}


class PromptError(InputError, ValueError):
    """A class-name or template file the classifier cannot use as it stands."""


def read_lines(path, what: str) -> List[str]:
    """The lines of ``path`` without their line breaks; an empty (or blank) line is refused."""
    try:
        with open(path, encoding='utf-8', newline='') as f:
            text = f.read()
    except UnicodeDecodeError as e:
        raise PromptError(f'{path}: not UTF-8 text ({e.reason} at byte {e.start}); the {what} file must be UTF-8, '
                          f'one {what} per line') from None
    lines = text.split('\n')
    if lines and lines[-1] == '':
        lines.pop()  # the final line break
    lines = [ln[:-1] if ln.endswith('\r') else ln for ln in lines]
    if not lines:
        raise PromptError(f'{path}: empty {what} file (one {what} per line expected)')
    for n, ln in enumerate(lines, 1):
        if not ln.strip():
            raise PromptError(f'{path}:{n}: empty line in the {what} file (one {what} per line expected, '
                              'no blank lines)')
    return lines


_ANNOUNCED = set()


def _announce(source: str, what: str, dup: dict):
    """Name the duplicates of a shipped list once per process."""
    if source not in _ANNOUNCED:
        _ANNOUNCED.add(source)
        from mmengine.logging import print_log
        print_log(f'{source}: {what}, kept as the release publishes them: ' +
                  ', '.join(f'{n!r} (lines {lines})' for n, lines in dup.items()), logger='current')


def _duplicates(items: List[str]) -> dict:
    seen = {}
    for i, x in enumerate(items, 1):
        seen.setdefault(x, []).append(i)
    return {x: lines for x, lines in seen.items() if len(lines) > 1}


def check_classnames(names: List[str], source: str = 'class names', allow_duplicates: bool = False) -> List[str]:
    dup = _duplicates(names)
    if dup and not allow_duplicates:
        name, lines = next(iter(dup.items()))
        raise PromptError(f'{source}: class name {name!r} appears on lines {lines}' +
                          (f' (and {len(dup) - 1} more duplicated names)' if len(dup) > 1 else '') +
                          ': two classes with one name get the same text embedding; make each name unique')
    if dup:
        _announce(source, f'{len(dup)} class names appear more than once', dup)
    return names


def check_templates(templates: List[str], source: str = 'templates', allow_duplicates: bool = False) -> List[str]:
    for n, t in enumerate(templates, 1):
        if '{c}' not in t:
            raise PromptError(f'{source}:{n}: template {t!r} has no {{c}} (where the class name goes)')
        try:
            t.format(c='x')
        except (IndexError, KeyError, ValueError) as e:
            raise PromptError(f'{source}:{n}: template {t!r} is not a format string with only {{c}} '
                              f'({type(e).__name__}: {e}); write a literal brace as {{{{ or }}}}') from None
    dup = _duplicates(templates)
    if dup and not allow_duplicates:
        t, lines = next(iter(dup.items()))
        raise PromptError(f'{source}: template {t!r} appears on lines {lines}: it would count twice in the mean')
    if dup:
        _announce(source, f'{len(dup)} templates appear more than once (they count twice in the mean)', dup)
    return templates


def read_classnames(path, allow_duplicates: bool = False) -> List[str]:
    return check_classnames(read_lines(path, 'class name'), str(path), allow_duplicates)


def read_templates(path, allow_duplicates: bool = False) -> List[str]:
    return check_templates(read_lines(path, 'template'), str(path), allow_duplicates)


def _language(lang: str) -> str:
    if lang not in LANGUAGES:
        raise PromptError(f'language {lang!r}: the release publishes ImageNet class names in {sorted(LANGUAGES)}')
    return lang


def classnames_file(lang: str = 'en') -> str:
    return osp.join(DATA_DIR, f'imagenet_classnames_{_language(lang)}.txt')


def templates_file(lang: str = 'en') -> str:
    return osp.join(DATA_DIR, f'imagenet_templates_{_language(lang)}.txt')


def imagenet_classnames(lang: str = 'en', subset: Optional[str] = None) -> List[str]:
    """The release's 1000 ImageNet class names in ``lang`` (OpenAI's for 'en'), or those of ``subset``
    ('imagenet-a' / 'imagenet-r': 200 classes, in ImageNet order)."""
    names = read_classnames(classnames_file(lang), allow_duplicates=True)
    if subset is None:
        return names
    index = {w: i for i, w in enumerate(imagenet_wnids())}
    return [names[index[w]] for w in imagenet_wnids(subset)]


def imagenet_templates(lang: str = 'en') -> List[str]:
    """The release's ImageNet templates in ``lang`` (the 80 OpenAI ones for 'en')."""
    return read_templates(templates_file(lang), allow_duplicates=True)


def imagenet_wnids(subset: Optional[str] = None) -> List[str]:
    """The 1000 ImageNet wnids in class-index order, or the 200 of 'imagenet-a' / 'imagenet-r'."""
    if subset not in SUBSETS:
        raise PromptError(f'subset {subset!r}: expected one of {list(SUBSETS)}')
    return read_lines(osp.join(DATA_DIR, SUBSETS[subset]), 'wnid')
