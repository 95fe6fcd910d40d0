"""The exported network: the segmentor (backbone -> neck -> head, resized to the input; a query head
such as Mask2Former's through its own ``predict``) around the backbone's own forward, with adaptive
pools written as matrices so the graph has dynamic shapes."""
import contextlib
import inspect

import torch
import torch.nn.functional as F
from torch import nn

from .errors import ExportError


def adaptive_pool_matrix(n_in, n_out: int, like: torch.Tensor) -> torch.Tensor:
    """``[n_out, n_in]`` averaging weights of adaptive average pooling (bins ``floor(i n/o)..ceil((i+1) n/o)``).

    Built from tensor ops on a possibly symbolic ``n_in``, so the pooling exports with dynamic sizes
    (PyTorch's decomposition of ``adaptive_avg_pool2d`` bakes the traced size into gather indices).
    """
    i = torch.arange(n_out, device=like.device)
    j = torch.arange(n_in, device=like.device)
    start = (i * n_in) // n_out
    end = ((i + 1) * n_in + n_out - 1) // n_out
    mask = (j[None, :] >= start[:, None]) & (j[None, :] < end[:, None])
    return mask.to(like.dtype) / (end - start).to(like.dtype)[:, None]


class ExportableAdaptiveAvgPool2d(nn.Module):
    """``nn.AdaptiveAvgPool2d`` as two small matrix products: the same numbers, any input size."""

    def __init__(self, output_size):
        super().__init__()
        o = output_size if isinstance(output_size, (tuple, list)) else (output_size, output_size)
        if any(v is None for v in o):
            raise ExportError(f'AdaptiveAvgPool2d({output_size}) with a None size cannot be exported')
        self.output_size = (int(o[0]), int(o[1]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ph = adaptive_pool_matrix(x.shape[-2], self.output_size[0], x)
        pw = adaptive_pool_matrix(x.shape[-1], self.output_size[1], x)
        return torch.einsum('ih,bchw,jw->bcij', ph, x, pw)


@contextlib.contextmanager
def exportable_pools(module: nn.Module):
    """Temporarily replace every ``nn.AdaptiveAvgPool2d`` under ``module`` (UperNet's PPM)."""
    swapped = []
    for parent in list(module.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is nn.AdaptiveAvgPool2d:
                setattr(parent, name, ExportableAdaptiveAvgPool2d(child.output_size))
                swapped.append((parent, name, child))
    try:
        yield module
    finally:
        for parent, name, child in swapped:
            setattr(parent, name, child)


class TracedSize(tuple):
    """An image size that deep-copies to itself: mmengine's data samples deep-copy their metainfo, and the
    symbolic sizes of a ``torch.export`` trace cannot be copied (they would lose their link to the input)."""

    def __deepcopy__(self, memo):
        return self


class ExportableSegmentor(nn.Module):
    """``forward(x)``: normalised ``[B, 3, H, W]`` -> logits ``[B, num_classes, H, W]``.

    The segmentor's backbone, neck and decode head (the auxiliary head is not part of inference), then
    a bilinear resize to the input size: what ``EncoderDecoder.encode_decode`` computes, through the
    backbone's own forward (InternViT traces with symbolic H, W: see ``pos_embed_for``).
    """

    def __init__(self, segmentor):
        super().__init__()
        self.backbone = segmentor.backbone
        self.neck = segmentor.neck if getattr(segmentor, 'with_neck', False) else None
        self.decode_head = segmentor.decode_head
        self.align_corners = bool(getattr(segmentor.decode_head, 'align_corners', False))
        # a head whose forward needs the data samples (mmseg's Mask2FormerHead / MaskFormerHead): its logits
        # are what its ``predict`` builds (for Mask2Former: softmax over the classes without the no-object
        # column x sigmoid masks resized to the input), so the graph runs ``predict`` itself, the input's
        # (symbolic) size as the image shape
        self.query_head = 'batch_data_samples' in inspect.signature(segmentor.decode_head.forward).parameters
        self.test_cfg = segmentor.test_cfg

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = self.backbone(x)
        if self.neck is not None:
            feats = self.neck(feats)
        if self.query_head:  # the head's own test-time output (Mask2Former: class scores x masks), at x's size
            return self.decode_head.predict(feats, [dict(img_shape=TracedSize(x.shape[2:]))], self.test_cfg)
        logits = self.decode_head(feats)
        return F.interpolate(logits, size=x.shape[2:], mode='bilinear', align_corners=self.align_corners)


def reference_logits(segmentor, x: torch.Tensor) -> torch.Tensor:
    """The PyTorch result the export must reproduce: mmseg's own ``encode_decode`` on ``x``."""
    with torch.no_grad():
        return segmentor.encode_decode(x, [dict(img_shape=x.shape[2:], ori_shape=x.shape[2:])])


class HalfPrecisionNetwork(nn.Module):
    """The exported network in float16 (weights, convolutions, matmuls) behind float32 input and output,
    so the runtime feeds and reads the same tensors as for an fp32 model. Norms keep computing in
    float32 (perception's norm layers upcast whatever the input dtype); BatchNorm and softmax run in
    float16, as GPU runtimes run them."""

    def __init__(self, network: nn.Module):
        super().__init__()
        self.network = network.half()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.network(x.to(torch.float16)).float()
