"""Datasets and transforms; importing this package registers them in mmseg's registries."""
from . import segmentation, transforms  # noqa: F401  (registration)
