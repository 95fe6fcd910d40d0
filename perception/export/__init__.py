"""Export trained segmentors for deployment: ONNX (verified in onnxruntime), fp16/bf16 safetensors, torch.export.

One call writes one bundle folder, atomically (built in a temporary folder next to it, verified, then
renamed into place; on any failure nothing is left behind and an existing bundle stays as it was)::

    out/
      manifest.json            normalisation, classes and palette, patch size, slide crop/stride, opset,
                               source config + checkpoint sha256, parity figures, every file's size/sha256
      model.onnx               dynamic batch and height/width (multiples of the patch size), logits resized
                               (fp32, or fp16 weights and compute behind fp32 input/output with --dtype fp16)
      model.onnx.data          to the input size; weights as external data above 2 GB (protobuf limit)
      config.py                the full config (backbone init_cfg dropped: the weights are all in the bundle)
      model.bf16.safetensors   (format 'safetensors') every segmentor tensor, floats in bf16 or fp16
      model.pt2                (format 'pt2') ``torch.export`` program, same dynamic shapes

The exported network is backbone -> neck -> decode head -> bilinear resize to the input, on a
normalised float32 ``[B, 3, H, W]`` input (mean/std and channel order in the manifest);
``perception.deploy`` reads the bundle without torch.

The package, by concern: ``wrapper`` (the exported network), ``metadata`` (what the manifest says
about the model), ``writers`` (torch.export, ONNX, safetensors), ``verify`` (against PyTorch),
``bundle_io`` (atomic folder swap), ``api`` (``export_model`` / ``export_segmentor``), ``lowmem`` (the
6B without an fp32 copy: ``--low-memory``).
"""
from .api import FORMATS, export_model, export_segmentor
from .errors import ExportError, ExportVerificationError
from .metadata import bundle_metadata, dump_config, resize_spec
from .verify import (DEFAULT_MIN_AGREEMENT, DEFAULT_TOLERANCE, DEFAULT_TOLERANCE_FP16, default_verify_sizes,
                     verify_onnx, verify_pt2, verify_whole_images)
from .wrapper import (ExportableAdaptiveAvgPool2d, ExportableSegmentor, HalfPrecisionNetwork, adaptive_pool_matrix,
                      exportable_pools, reference_logits)
from .writers import (EXTERNAL_DATA_THRESHOLD, INPUT_NAME, MAX_SIDE, ONNX_FILE, OUTPUT_NAME, SAFETENSORS_DTYPES,
                      export_onnx, export_safetensors, torch_export)

__all__ = [
    'FORMATS', 'export_model', 'export_segmentor', 'ExportError', 'ExportVerificationError', 'bundle_metadata',
    'dump_config', 'resize_spec', 'DEFAULT_MIN_AGREEMENT', 'DEFAULT_TOLERANCE', 'DEFAULT_TOLERANCE_FP16',
    'default_verify_sizes', 'verify_whole_images', 'HalfPrecisionNetwork',
    'verify_onnx', 'verify_pt2', 'ExportableAdaptiveAvgPool2d', 'ExportableSegmentor', 'adaptive_pool_matrix',
    'exportable_pools', 'reference_logits', 'EXTERNAL_DATA_THRESHOLD', 'INPUT_NAME', 'MAX_SIDE', 'ONNX_FILE',
    'OUTPUT_NAME', 'SAFETENSORS_DTYPES', 'export_onnx', 'export_safetensors', 'torch_export',
]
