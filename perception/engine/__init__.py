"""Training machinery: layer-wise lr decay, bf16 optimizer wrapper, hooks, the Pretrained
initializer, the portable FSDP strategy. Importing it registers them, and allow-lists what
mmengine checkpoints hold so that resuming loads them with ``weights_only=True``."""
from ..checkpoint import allow_mmengine_globals
from . import checkpoints, fsdp, hooks, layer_decay, optim_wrapper, pretrained  # noqa: F401  (registration)

allow_mmengine_globals()
