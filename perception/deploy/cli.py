"""How the command-line tools report a refusal: one line on stderr, exit status 2 (1 for a failed
export verification), no traceback; ``PERCEPTION_DEBUG=1`` re-raises for the full traceback."""
import os
import sys

DEBUG_ENV = 'PERCEPTION_DEBUG'


def report(error: BaseException, prefix: str = 'error', status: int = 2) -> int:
    """Print ``prefix: error`` to stderr and return ``status``; re-raise when ``$PERCEPTION_DEBUG`` is set."""
    if os.environ.get(DEBUG_ENV, '') not in ('', '0'):
        raise error
    print(f'{prefix}: {error}', file=sys.stderr)
    return status
