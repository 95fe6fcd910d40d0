"""Reading, converting and loading every released InternViT weight format."""
from .errors import CheckpointError
from .formats import (CONVERTERS, FORMATS, convert_hf, convert_hf_native, convert_internvit,
                      convert_internvl_chat, convert_mmseg, convert_to_internvit, detect_format)
from .io import LazyTensor, read_pickle, read_safetensors, write_safetensors
from .loader import (arch_from_hf_config, infer_arch, load_pretrained_into, open_checkpoint,
                     read_backbone_state)
from .safe_load import allow_mmengine_globals, torch_load

__all__ = [
    'CheckpointError', 'CONVERTERS', 'FORMATS', 'convert_hf', 'convert_hf_native', 'convert_internvit',
    'convert_internvl_chat', 'convert_mmseg', 'convert_to_internvit', 'detect_format', 'LazyTensor',
    'read_pickle', 'read_safetensors', 'write_safetensors', 'arch_from_hf_config',
    'infer_arch', 'load_pretrained_into', 'open_checkpoint', 'read_backbone_state',
    'allow_mmengine_globals', 'torch_load'
]
