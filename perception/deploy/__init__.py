"""Torch-free runtime for exported segmentors: numpy + onnxruntime + OpenCV, nothing else.

    from perception.deploy import load_bundle
    seg = load_bundle('exports/upernet')            # validates manifest.json against model.onnx
    label, overlay = seg.segment('street.jpg')      # any size: test resize and mode as in the config

Nothing here imports torch, mmengine, mmcv or mmseg (nor do the parent package's ``__init__`` and the
shared helpers of ``perception.common``), so a bundle runs where only ``pip install numpy onnxruntime
opencv-python-headless`` is available.
"""
from .bundle import BUNDLE_FORMAT, BUNDLE_VERSION, MANIFEST_NAME, DeployError, check_files, read_manifest
from .io import segment_images
from .runtime import Segmenter, argmax_resized, default_palette, load_bundle, overlay, resize_bilinear

__all__ = ['BUNDLE_FORMAT', 'BUNDLE_VERSION', 'MANIFEST_NAME', 'DeployError', 'Segmenter', 'argmax_resized',
           'check_files', 'default_palette', 'load_bundle', 'overlay', 'read_manifest', 'resize_bilinear',
           'segment_images']
