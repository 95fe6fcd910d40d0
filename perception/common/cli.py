"""How the command-line tools report a refusal: one line on stderr, exit status 2 (1 for a failed
export verification), no traceback; ``PERCEPTION_DEBUG=1`` re-raises for the full traceback.

Every ``tools/*.py`` ends with ``sys.exit(run_main(main))``: bad input (``InputError`` - which the
project's own error classes derive from - ``ValueError`` and ``OSError``: a missing or unwritable
file, a value out of range) is printed as one line; anything else is a bug and keeps its traceback.
The argparse ``type=`` helpers below refuse out-of-range numbers when the command line is parsed."""
import argparse
import os
import sys

from .errors import InputError

DEBUG_ENV = 'PERCEPTION_DEBUG'

INPUT_ERRORS = (InputError, ValueError, OSError)


def report(error: BaseException, prefix: str = 'error', status: int = 2) -> int:
    """Print ``prefix: error`` to stderr and return ``status``; re-raise when ``$PERCEPTION_DEBUG`` is set."""
    if os.environ.get(DEBUG_ENV, '') not in ('', '0'):
        raise error
    msg = str(error) or type(error).__name__
    if isinstance(error, OSError) and error.filename is not None and str(error.filename) not in msg:
        msg = f'{error.filename}: {msg}'
    print(f'{prefix}: {" ".join(msg.split())}', file=sys.stderr)
    return status


def run_main(main, argv=None) -> int:
    """``main(argv)`` with bad input reported as one line (status 2); its own return value otherwise."""
    try:
        return main(argv) or 0
    except INPUT_ERRORS as e:
        return report(e)
    except KeyboardInterrupt:
        print('interrupted', file=sys.stderr)
        return 130


def _number(kind, lo=None, hi=None, lo_open=False, hi_open=False):
    def parse(text):
        try:
            v = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f'expected {"an integer" if kind is int else "a number"}, got {text!r}')
        if v != v or (lo is not None and (v < lo or (lo_open and v == lo))) or \
                (hi is not None and (v > hi or (hi_open and v == hi))):
            left = '(' if lo_open else '['
            right = ')' if hi_open else ']'
            raise argparse.ArgumentTypeError(
                f'{text} is outside {left}{"-inf" if lo is None else lo}, {"inf" if hi is None else hi}{right}')
        return v
    parse.__name__ = kind.__name__  # argparse names the type in its messages
    return parse


positive_int = _number(int, 1)
non_negative_int = _number(int, 0)
positive_float = _number(float, 0, lo_open=True)
non_negative_float = _number(float, 0)
unit_float = _number(float, 0, 1)                   # [0, 1]
open_unit_float = _number(float, 0, 1, lo_open=True)  # (0, 1]


def torch_device(text: str) -> str:
    """``--device``: ``cpu``, ``cuda`` or ``cuda:N`` that this machine has (torch imported only for cuda)."""
    import re
    m = re.fullmatch(r'(cpu|cuda)(?::(\d+))?', text)
    if not m or (m.group(1) == 'cpu' and m.group(2)):
        raise argparse.ArgumentTypeError(f'expected cpu, cuda or cuda:N, got {text!r}')
    if m.group(1) == 'cuda':
        import torch
        n = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if n == 0:
            raise argparse.ArgumentTypeError(f'{text}: CUDA is not available here (no GPU or driver visible to '
                                             f'torch {torch.__version__}); use cpu')
        if m.group(2) and int(m.group(2)) >= n:
            raise argparse.ArgumentTypeError(f'{text}: this machine has {n} GPU(s)')
    return text
