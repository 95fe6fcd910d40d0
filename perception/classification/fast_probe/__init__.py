"""Fast linear probing: extract frozen features once, cache them, train many heads in one pass.

The reference reruns the 6B for every epoch of every learning rate. Here the backbone runs once
per image (deterministic test transform), features go to memory-mapped float16 arrays under a
manifest that pins model, checkpoint hash, transform and image list (a cache made otherwise is
refused, not reused), an interrupted extraction resumes where it stopped, and a grid of
(feature choice x learning rate) heads trains on the cached features in one pass per batch
(dinov2-style). The best head is saved as a checkpoint the classification config loads.

Feature layout per image, for ``n = max(n_last_blocks)`` last blocks ``b``:
``[cls_b, mean_patch_b for b in the n last blocks, last block first]`` (each ``C`` wide).
Choices: ``cls`` (last cls), ``cls_patch`` (InternVL's cls_patch_concat: last cls + last mean
patch), ``cls_patch_lastN`` (the same for N last blocks, concatenated).

By concern: ``cache`` (the cache format and what it pins), ``extract`` (the frozen backbone over the
images), ``heads`` (the head grid), ``train`` (training, evaluation, ``run_linear_probe``). The plain
probe's epoch time, for comparison, is ``benchmarks.probe.plain_probe_epoch_seconds`` (outside the package).
"""
from .cache import CACHE_VERSION, CacheMismatchError, FeatureCache, backbone_checkpoint, cache_identity
from .extract import build_eval_dataset, build_frozen_backbone, extract_features, preprocess
from .heads import HeadGrid, feature_choices, save_head
from .train import IN_MEMORY_BYTES, evaluate_heads, format_results, run_linear_probe, train_heads

__all__ = [
    'CACHE_VERSION', 'CacheMismatchError', 'FeatureCache', 'backbone_checkpoint', 'cache_identity',
    'build_eval_dataset', 'build_frozen_backbone', 'extract_features', 'preprocess', 'HeadGrid',
    'feature_choices', 'save_head', 'IN_MEMORY_BYTES', 'evaluate_heads', 'format_results', 'run_linear_probe',
    'train_heads',
]
