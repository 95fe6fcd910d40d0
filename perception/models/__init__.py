"""OpenMMLab models of perception; each class registers itself where it is defined
(``perception.registry.register``), so importing this package registers them."""
from .heads import LinearProbeHead
from .internvit import InternViT
from .loading import load_backbone
from .pyramid import InternViTPyramid

__all__ = ['InternViT', 'InternViTPyramid', 'LinearProbeHead', 'load_backbone']
