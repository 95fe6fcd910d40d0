from ..common.errors import InputError


class CheckpointError(InputError, ValueError):
    """A checkpoint that cannot be read or does not fit the model; the message names the problem."""


def list_keys(keys, limit: int = 12) -> str:
    keys = sorted(keys)
    shown = ', '.join(keys[:limit])
    return shown + (f', ... ({len(keys)} in all)' if len(keys) > limit else '')
