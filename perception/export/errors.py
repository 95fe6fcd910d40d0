"""Errors of the export: one line naming what cannot be exported, or where verification failed."""
from ..common.errors import InputError


class ExportError(InputError, RuntimeError):
    """The segmentor cannot be exported as asked; the message says what and where."""


class ExportVerificationError(ExportError):
    """The exported model disagrees with PyTorch beyond the tolerance."""
