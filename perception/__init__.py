"""perception: dense perception with InternViT on OpenMMLab.

Importing the package registers its models (``type='InternViT'``, ``type='InternViTPyramid'``) in
mmsegmentation's and mmpretrain's ``MODELS``.
"""
__version__ = '0.1.0'

from . import models  # noqa: E402,F401  (registration)
from .models import InternViT, InternViTPyramid  # noqa: E402,F401
from .checkpoint import CheckpointError, allow_mmengine_globals, load_backbone  # noqa: E402,F401

allow_mmengine_globals()  # mmengine checkpoints (resume, load_from) load with weights_only=True
