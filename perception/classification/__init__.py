"""ImageNet linear probing on mmpretrain; importing this package registers its datasets, probe
necks and heads, metrics and hooks in mmpretrain's (and mmengine's) registries."""
from . import datasets, hooks, metrics, probes  # noqa: F401  (registration)
