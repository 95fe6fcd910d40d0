"""Segmentation: loading segmentor checkpoints (format C and this project's), train/test entry points."""
from .checkpoint import convert_segmentor_state, load_segmentor_checkpoint

__all__ = ['convert_segmentor_state', 'load_segmentor_checkpoint']
