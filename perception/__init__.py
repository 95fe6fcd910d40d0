"""perception: dense perception with InternViT on OpenMMLab.

Importing the package registers its models (``type='InternViT'``, ``type='InternViTPyramid'``) in
mmsegmentation's and mmpretrain's ``MODELS``.
"""
__version__ = '0.1.0'

from . import models  # noqa: E402,F401  (registration)
from .models import InternViT, InternViTPyramid  # noqa: E402,F401
