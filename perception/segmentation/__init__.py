"""Segmentation: loading segmentor checkpoints (format C and this project's), train/test entry points."""
from .. import datasets, models  # noqa: F401  (the registered backbone, heads and datasets)
from .checkpoint import convert_segmentor_state, load_segmentor_checkpoint

__all__ = ['convert_segmentor_state', 'load_segmentor_checkpoint']
