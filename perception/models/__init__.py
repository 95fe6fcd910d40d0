"""OpenMMLab models of perception; importing this registers them in mmseg's and mmpretrain's MODELS."""
from .internvit import InternViT
from .loading import load_backbone
from .pyramid import InternViTPyramid
from .registry import register_all

register_all()

__all__ = ['InternViT', 'InternViTPyramid', 'load_backbone']
