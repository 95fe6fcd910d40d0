"""ImageNet linear probing on mmpretrain; importing this package registers its datasets, probe
necks and heads, metrics and hooks in mmpretrain's (and mmengine's) registries, and the backbone
they read (``perception.models``)."""
from .. import models  # noqa: F401  (InternViT in mmpretrain's MODELS)
from . import datasets, hooks, metrics, probes  # noqa: F401  (registration)
