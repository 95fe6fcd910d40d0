"""Writers of the exported files: ``torch.export`` with dynamic shapes, ONNX, safetensors."""
import contextlib
import io
import os
from pathlib import Path
from typing import Dict, Optional

import torch
from mmengine.logging import print_log

from ..common.dtypes import torch_dtype
from ..deploy.bundle import (META_FORMAT, META_MODEL_ID, META_NUM_CLASSES, META_PATCH_SIZE, META_SIZE_DIVISOR,
                             ONNX_FORMAT_TAG)
from .errors import ExportError
from .pixel_decoder import exportable_deform_attn
from .wrapper import ExportableSegmentor, exportable_pools


# Weights above this go to ``model.onnx.data``: protobuf caps one message at 2 GiB (graph included);
# torch's exporter externalises from 1.5 GiB on whatever is asked, so that is the effective default.
EXTERNAL_DATA_THRESHOLD = 3 * 1024 ** 3 // 2


MAX_SIDE = 8192  # largest height/width the dynamic shapes allow


ONNX_FILE = 'model.onnx'
INPUT_NAME, OUTPUT_NAME = 'input', 'logits'


SAFETENSORS_DTYPES = ('bf16', 'fp16', 'fp32')


def _dynamic_shapes(patch: int, min_size: int):
    from torch.export import Dim
    lo = max(1, -(-min_size // patch))
    batch = Dim('batch', min=1, max=1024)
    gh = Dim('grid_h', min=lo, max=MAX_SIDE // patch)
    gw = Dim('grid_w', min=lo, max=MAX_SIDE // patch)
    return {'x': {0: batch, 2: patch * gh, 3: patch * gw}}


def torch_export(wrapper: ExportableSegmentor, example: torch.Tensor, patch: int, min_size: int):
    """``torch.export`` of the wrapper with dynamic batch and H, W (multiples of ``patch``: the input multiple,
    the patch size or the backbone's ``size_divisor``)."""
    with exportable_pools(wrapper), exportable_deform_attn(wrapper), torch.no_grad():
        try:
            return torch.export.export(wrapper, (example,), dynamic_shapes=_dynamic_shapes(patch, min_size))
        except Exception as e:
            seg = getattr(wrapper, 'network', wrapper)  # HalfPrecisionNetwork wraps the segmentor
            parts = ' + '.join(type(getattr(seg, k)).__name__ for k in ('backbone', 'decode_head') if hasattr(seg, k))
            raise ExportError(f'torch.export failed for {parts or type(wrapper).__name__}: {type(e).__name__}: '
                              f'{str(e).strip()[:2000]}') from e


def _initializer_bytes(model) -> int:
    total = 0
    for v in model.graph.initializers.values():
        if v.const_value is not None:
            total += v.const_value.nbytes
    return total


def export_onnx(exported_program, path, opset: Optional[int] = None, model_id: str = '', num_classes: int = 0,
                patch: int = 0, size_divisor: int = 0, external_data_threshold: int = EXTERNAL_DATA_THRESHOLD,
                weights: Optional[Dict[str, torch.Tensor]] = None, weights_dtype: torch.dtype = torch.float32) -> Dict:
    """ONNX through the dynamo exporter; the weights go to ``<file>.data`` above the threshold.

    ``weights``: for a program traced on the ``meta`` device (``--low-memory``), the tensors its
    initializers take, cast to ``weights_dtype`` one at a time as the file is written
    (:mod:`.lowmem`); the exporter's optimizer is skipped (it would materialise them).

    Returns ``{'opset', 'external_data': [file names], 'initializer_bytes'}``.
    """
    path = Path(path)
    log = io.StringIO()
    try:
        with contextlib.redirect_stdout(log), torch.no_grad():
            prog = torch.onnx.export(exported_program, (), dynamo=True, opset_version=opset,
                                     input_names=[INPUT_NAME], output_names=[OUTPUT_NAME], verbose=False,
                                     optimize=weights is None)
    except Exception as e:
        raise ExportError(f'ONNX export failed: {type(e).__name__}: {str(e).strip()[:2000]}') from e
    finally:
        if log.getvalue().strip():
            print_log(log.getvalue().strip(), logger='current', level=10)
    prog.model.metadata_props.update({META_FORMAT: ONNX_FORMAT_TAG, META_MODEL_ID: model_id,
                                      META_NUM_CLASSES: str(num_classes), META_PATCH_SIZE: str(patch),
                                      META_SIZE_DIVISOR: str(size_divisor or patch)})
    if weights is not None:
        from .lowmem import bind_weights, fold_weight_transposes
        nbytes = bind_weights(prog.model, weights, weights_dtype)
        folded = fold_weight_transposes(prog.model)
        # the exporter's optimizer on the graph (shape arithmetic, the position-embedding resize): it
        # leaves initializers above its size limit alone, so the lazy weights stay unmaterialised
        with contextlib.redirect_stdout(log), torch.no_grad():
            prog.optimize()
        print_log(f'ONNX weights bound lazily ({nbytes / 2 ** 30:.2f} GiB, {folded} weight transposes folded): '
                  'written one tensor at a time', logger='current')
    else:
        nbytes = _initializer_bytes(prog.model)
    external = nbytes > external_data_threshold
    before = set(os.listdir(path.parent))
    prog.save(str(path), external_data=external)
    data_files = sorted(f for f in set(os.listdir(path.parent)) - before if f != path.name)
    if external and not data_files:
        raise ExportError(f'{path}: external data was requested but no data file was written')
    opset_used = int(prog.model.opset_imports.get('', 0))
    del prog
    return dict(opset=opset_used, external_data=data_files, initializer_bytes=int(nbytes))


def export_safetensors(segmentor, out_dir, dtype: str = 'bf16', model_id: str = '') -> Dict:
    """Weights-only ``model.<dtype>.safetensors`` (every tensor of the segmentor, floats cast) and
    ``config.py``: ``init_segmentor(out/'config.py', out/'model.bf16.safetensors')`` loads them."""
    from ..checkpoint.io import LazyTensor, read_safetensors, write_safetensors
    if dtype not in SAFETENSORS_DTYPES:
        raise ExportError(f'safetensors dtype must be one of {list(SAFETENSORS_DTYPES)}, got {dtype!r}')
    out_dir = Path(out_dir)
    path = out_dir / f'model.{dtype}.safetensors'
    state = segmentor.state_dict()
    tensors = {k: LazyTensor.wrap(v.detach().cpu()) for k, v in state.items()}
    write_safetensors(path, tensors, metadata=dict(format='perception-segmentor-weights', dtype=dtype,
                                                   config='config.py', model_id=model_id),
                      dtype=torch_dtype(dtype))
    back, _ = read_safetensors(path)
    wrong = [k for k in state if k not in back or tuple(back[k].shape) != tuple(state[k].shape)]
    if wrong or len(back) != len(state):
        raise ExportError(f'{path}: written tensors do not match the segmentor ({wrong[:5]})')
    return dict(file=path.name, dtype=dtype, tensors=len(state))
