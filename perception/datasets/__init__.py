"""Datasets and transforms; importing this package registers them in mmseg's registries."""
from . import ade, transforms  # noqa: F401  (registration)
