"""Command-line arguments the tools share that turn into config changes: ``--cfg-options`` and
``--compile`` / ``--no-compile``.

``--cfg-options KEY=VALUE`` keeps what was typed (mmengine's ``DictAction`` deletes every space and
strips quotes: ``data_root=/data/ade x`` became ``/data/adex``). The rules, :func:`parse_option_value`:

- a word is a string, verbatim: ``data_root=/data/ade x`` (one shell argument: quote it in the shell,
  ``"data_root=/data/ade x"``) gives ``'/data/ade x'``; only numbers (``1``, ``1e-4``), ``True`` /
  ``False`` (any case), ``None`` become other types, as in mmengine;
- quotes that reach the tool (``'KEY="a b"'`` in the shell) enclose one string, verbatim: ``"1"`` is
  the string ``'1'``, ``"a,b"`` is one string with a comma;
- ``[...]`` is a list and ``(...)`` a tuple, nested as deep as needed; their elements are separated by
  commas, with the spaces around each element dropped (``[wall, floor tile]`` is
  ``['wall', 'floor tile']``);
- commas without brackets: numbers, booleans and None make a list, as in mmengine
  (``out_indices=5,11,17``); with a word among them it could be a list or a path with a comma, so it is
  refused, saying how to write either;
- anything else that cannot be read (an unclosed bracket or quote, an empty element) is refused in one
  line naming the item: a value is never changed to fit."""
import copy
from typing import Optional

from mmengine.config import DictAction as _MMDictAction


def _scalar(word: str):
    """mmengine's reading of one word: int, float, bool (any case), None, else the word itself."""
    return _MMDictAction._parse_int_float_bool(word)


def _word(word: str):
    """``(value, kind)`` of an unquoted word; numbers separated by spaces (``512 512``) are refused:
    a list needs commas, a string with spaces quotes."""
    value = _scalar(word)
    if isinstance(value, str):
        parts = word.split()
        if len(parts) > 1 and not any(isinstance(_scalar(w), str) for w in parts):
            raise ValueError(f'{word!r}: list elements are separated by commas ([{", ".join(parts)}]); quote a '
                             'string with spaces')
        return value, 'word'
    return value, 'scalar'


class _Reader:
    """Reads a ``--cfg-options`` value: elements, ``[...]`` / ``(...)`` sequences and quoted strings."""

    def __init__(self, text: str):
        self.s, self.i = text, 0

    def _skip(self):
        while self.i < len(self.s) and self.s[self.i].isspace():
            self.i += 1

    def _at(self) -> str:
        return f'character {self.i + 1}'

    def element(self):
        """One element as ``(value, kind)``; kind: 'seq', 'quoted', 'scalar', 'word' or 'empty'."""
        self._skip()
        s = self.s
        if self.i < len(s) and s[self.i] in '[(':
            return self.sequence(), 'seq'
        if self.i < len(s) and s[self.i] in '\'"':
            q, start = s[self.i], self.i
            end = s.find(q, start + 1)
            if end < 0:
                raise ValueError(f'the quote {q} at character {start + 1} is not closed')
            self.i = end + 1
            return s[start + 1:end], 'quoted'
        start, depth = self.i, 0
        while self.i < len(s):
            c = s[self.i]
            if c in '[(':
                depth += 1
            elif c in '])':
                if not depth:
                    break
                depth -= 1
            elif c == ',' and not depth:
                break
            self.i += 1
        word = s[start:self.i].strip()
        if not word:
            return None, 'empty'
        return _word(word)

    def sequence(self):
        s, opener = self.s, self.s[self.i]
        closer, where = ']' if opener == '[' else ')', self._at()
        self.i += 1
        items = []
        while True:
            self._skip()
            if self.i >= len(s):
                raise ValueError(f'the {opener} at {where} is not closed')
            if s[self.i] == closer:  # empty, or after a trailing comma
                self.i += 1
                break
            value, kind = self.element()
            if kind == 'empty':
                raise ValueError(f'an empty element at {self._at()}')
            items.append(value)
            self._skip()
            if self.i >= len(s):
                raise ValueError(f'the {opener} at {where} is not closed')
            if s[self.i] == closer:
                self.i += 1
                break
            if s[self.i] != ',':
                raise ValueError(f'expected , or {closer} at {self._at()}, found {s[self.i]!r}')
            self.i += 1
        return tuple(items) if opener == '(' else items

    def top(self):
        """The elements separated by commas outside brackets and quotes, ``[(value, kind), ...]``, and
        whether there was such a comma."""
        items = []
        while True:
            items.append(self.element())
            self._skip()
            if self.i >= len(self.s):
                return items, len(items) > 1
            if self.s[self.i] != ',':
                raise ValueError(f'unexpected {self.s[self.i]!r} at {self._at()} (quote the value to keep it '
                                 'as one string)')
            self.i += 1
            self._skip()
            if self.i >= len(self.s):  # a trailing comma: a list of one, as in mmengine
                return items, True


def parse_option_value(text: str, key: str = 'KEY'):
    """The value of one ``--cfg-options KEY=VALUE`` item (rules in the module docstring). Raises
    ``ValueError`` for what it cannot read without changing it; ``key`` only shapes the message."""
    stripped = text.strip()
    if not stripped:
        return text  # KEY= : the empty string
    if ',' not in stripped and stripped[0] not in '[(\'"':
        value, kind = _word(stripped)
        return text if kind == 'word' else value  # a word keeps every character typed
    items, comma = _Reader(stripped).top()
    kinds = [k for _, k in items]
    if not comma:
        return items[0][0]
    if 'empty' in kinds:
        raise ValueError('an empty element between commas')
    if 'word' in kinds:
        raise ValueError(f'{stripped!r} could be a list or one string with commas: write {key}=[{stripped}] for '
                         f'a list, or {key}=\'"{stripped}"\' (the double quotes reach the tool) for one string')
    return [v for v, _ in items]  # numbers / booleans / None / sequences / quoted strings: a list, as in mmengine


class DictAction(_MMDictAction):
    """``--cfg-options KEY=VALUE ...``: mmengine's action with values kept as typed
    (:func:`parse_option_value`); a malformed item is an argparse error naming it (mmengine fails with
    ``not enough values to unpack``, an ``AssertionError`` for unbalanced brackets, or silently drops
    spaces and quotes)."""

    @staticmethod
    def _parse_iterable(val: str):
        return parse_option_value(val)

    def __call__(self, parser, namespace, values, option_string=None):
        options = copy.copy(getattr(namespace, self.dest, None) or {})
        for kv in values or ():
            key, sep, text = kv.partition('=')
            if not sep or not key.strip():
                parser.error(f'{option_string}: expected KEY=VALUE, got {kv!r}')
            if key != ''.join(key.split()):
                parser.error(f'{option_string}: {kv!r}: a key has no spaces')
            try:
                options[key] = parse_option_value(text, key)
            except ValueError as e:
                parser.error(f'{option_string} {kv!r}: {e}')
        setattr(namespace, self.dest, options)


def add_compile_argument(parser):
    """``--compile [force]`` / ``--no-compile`` of the tools: ``model.backbone.compile_blocks`` (True, or
    'force': fail instead of running eagerly where the platform cannot compile; False: eager)."""
    g = parser.add_mutually_exclusive_group()
    g.add_argument('--compile', nargs='?', const=True, default=None, choices=[True, 'force'], metavar='force',
                   type=lambda v: 'force' if v == 'force' else v,
                   help="compile the backbone's blocks (one torch.compile of the block body shared by all "
                        "blocks); without a C++ compiler / triton it warns and runs eagerly, '--compile force' "
                        "fails instead. Default: on with CUDA (where it pays off), off on CPU")
    g.add_argument('--no-compile', dest='compile', action='store_const', const=False,
                   help='run the blocks eagerly, also on CUDA')


def compile_options(compile_blocks, cfg_options: Optional[dict] = None) -> Optional[dict]:
    """``cfg_options`` with ``model.backbone.compile_blocks`` set when ``--compile`` was given."""
    if compile_blocks is None:
        return cfg_options
    return dict(cfg_options or {}, **{'model.backbone.compile_blocks': compile_blocks})
