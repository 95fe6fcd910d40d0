"""Exporting a segmentor whose backbone is held in bf16 (``--low-memory``): the 6B on a 24 GiB machine.

The usual export holds the segmentor in fp32 (the 6B UperNet: 25 GB) and onnxruntime then holds a
second copy. Here nothing of the 6B exists in fp32 as a whole, at any point:

* the backbone lives in bf16, as released (``init_segmentor(weights_dtype='bf16')``, 12.6 GB);
* the graph is traced from a copy of the segmentor on the ``meta`` device (no memory);
* each ONNX initializer is a lazy tensor that casts its bf16 weight to fp32 (and transposes it where
  the graph would) only when the file is written: one tensor at a time, streamed to external data;
* the PyTorch reference computes in fp32 from the bf16 weights one module at a time
  (:func:`fp32_compute`): the same numbers the fp32 ONNX model computes, without a full fp32 copy;
* onnxruntime memory-maps the external data and does not prepack the weights
  (``deploy.bundle.open_session(low_memory=True)``), so the 25 GB of fp32 weights are page cache, not process memory
  (the weight transposes are folded lazily at export, so its constant folding has nothing to copy).
"""
import contextlib
from typing import Dict, Optional

import numpy as np
import torch

from .errors import ExportError

def low_precision_backbone(segmentor) -> Optional[torch.dtype]:
    """The dtype of a backbone held in bf16 / fp16, else None."""
    dtypes = {p.dtype for p in segmentor.backbone.parameters() if p.is_floating_point()}
    low = dtypes & {torch.bfloat16, torch.float16}
    if low and len(dtypes) > 1:
        raise ExportError(f'backbone parameters in several dtypes {sorted(map(str, dtypes))}: hold it in one')
    return next(iter(low)) if low else None


@contextlib.contextmanager
def fp32_compute(module: torch.nn.Module):
    """Run ``module`` in fp32 while its weights stay low precision: each submodule's own parameters
    (and floating buffers) are widened just before it runs and put back right after, so at most one
    submodule's weights exist in fp32 at a time."""
    handles = []

    def pre(mod, args):
        saved = {}
        for n, p in mod.named_parameters(recurse=False):
            if p.dtype in (torch.bfloat16, torch.float16):
                saved[n] = p.data
                p.data = p.data.float()
        mod._fp32_saved = saved

    def post(mod, args, out):
        for n, data in getattr(mod, '_fp32_saved', {}).items():
            getattr(mod, n).data = data
        mod._fp32_saved = {}

    for mod in module.modules():
        if any(p.dtype in (torch.bfloat16, torch.float16) for p in mod.parameters(recurse=False)):
            handles += [mod.register_forward_pre_hook(pre), mod.register_forward_hook(post)]
    try:
        yield module
    finally:
        for h in handles:
            h.remove()
        for mod in module.modules():
            mod.__dict__.pop('_fp32_saved', None)


def graph_model(segmentor):
    """A copy of ``segmentor`` on the ``meta`` device, in fp32: what ``torch.export`` traces."""
    from ..config import build_model
    return build_model(segmentor.cfg, device='meta').eval()


def _np_dtype(dtype: torch.dtype):
    return {torch.float32: np.float32, torch.float16: np.float16}[dtype]


def bind_weights(model, state: Dict[str, torch.Tensor], dtype: torch.dtype = torch.float32,
                 strip_prefixes=('network.',)) -> int:
    """Point every initializer of the ONNX ``model`` (``onnx_ir``) at a lazy tensor over ``state``:
    floating tensors cast to ``dtype`` when written, one at a time. Returns the bytes they will take.
    A weight the graph needs and ``state`` lacks, or a shape that differs, is an ExportError."""
    import onnx_ir as ir
    total, missing = 0, []
    ir_dtype = {torch.float32: ir.DataType.FLOAT, torch.float16: ir.DataType.FLOAT16}[dtype]
    for name, value in model.graph.initializers.items():
        key = name
        for p in strip_prefixes:
            if key not in state and key.startswith(p):
                key = key[len(p):]
        t = state.get(key)
        if t is None:
            missing.append(name)
            continue
        shape = list(t.shape)
        if value.shape is not None and list(value.shape.numpy()) != shape:
            raise ExportError(f'ONNX initializer {name}: graph shape {list(value.shape.numpy())} != weight {shape}')
        if t.is_floating_point():
            def make(t=t):
                return ir.tensor(np.ascontiguousarray(t.detach().to(dtype).numpy()))
            dt = ir_dtype
            nbytes = t.numel() * torch.tensor([], dtype=dtype).element_size()
        else:
            def make(t=t):
                return ir.tensor(t.detach().numpy())
            dt = ir.DataType.from_numpy(t.detach().numpy().dtype)
            nbytes = t.numel() * t.element_size()
        value.const_value = ir.LazyTensor(make, dtype=dt, shape=ir.Shape(shape), name=name)
        total += nbytes
    if missing:
        raise ExportError(f'{len(missing)} ONNX initializer(s) have no weight in the segmentor: {missing[:5]}')
    return total


def fold_weight_transposes(model) -> int:
    """``Transpose(W)`` of an initializer becomes an initializer holding ``W`` transposed, computed
    lazily when written (the exporter's optimizer would fold it into an in-memory copy of every
    linear weight; onnxruntime's constant folding likewise). Returns how many were folded."""
    import onnx_ir as ir
    graph = model.graph
    folded = 0
    for node in list(graph):
        src = node.inputs[0] if node.op_type == 'Transpose' and node.inputs else None
        if src is None or src.name not in graph.initializers or not isinstance(src.const_value, ir.LazyTensor):
            continue
        shape = list(src.shape.numpy())
        perm = list(node.attributes['perm'].as_ints()) if 'perm' in node.attributes else list(range(len(shape)))[::-1]
        new_shape = [shape[i] for i in perm]
        lazy = src.const_value

        def make(lazy=lazy, perm=perm):
            return ir.tensor(np.ascontiguousarray(np.transpose(lazy.numpy(), perm)))
        name = f'{src.name}.T{"".join(map(str, perm))}'
        if name in graph.initializers:  # the same weight transposed the same way twice
            new = graph.initializers[name]
        else:
            new = ir.Value(name=name, shape=ir.Shape(new_shape), type=ir.TensorType(lazy.dtype),
                           const_value=ir.LazyTensor(make, dtype=lazy.dtype, shape=ir.Shape(new_shape), name=name))
            graph.register_initializer(new)
        ir.convenience.replace_all_uses_with(node.outputs[0], new)
        graph.remove(node, safe=True)
        if not src.uses():
            del graph.initializers[src.name]
        folded += 1
    return folded
