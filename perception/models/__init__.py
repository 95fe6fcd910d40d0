"""OpenMMLab models of perception; each class registers itself where it is defined
(``perception.registry.register``), so importing this package registers them."""
from ..compat import patch_transformers

patch_transformers()  # before .heads imports mmseg's models: with mmdet installed they import mmpretrain's
from .adapter import InternViTAdapter  # noqa: E402
from .heads import LinearProbeHead  # noqa: E402
from .internvit import InternViT  # noqa: E402
from .loading import load_backbone  # noqa: E402
from .pyramid import InternViTPyramid  # noqa: E402

__all__ = ['InternViT', 'InternViTAdapter', 'InternViTPyramid', 'LinearProbeHead', 'load_backbone']
