"""Speed and memory benchmarks of InternViT and the GPU checks, outside the installed package (as in timm
and mmseg); run through ``tools/benchmark*.py``, ``tools/gpu_check.py``, ``tools/memory_step.py``,
``tools/export_memory.py`` and ``tools/linear_probe.py --benchmark``.

* ``machine``: ``machine_line`` (where and when a figure was measured) and the memory readings
  (peak RSS, CUDA peak).
* ``timing``: the one timer: per-call times, interleaved medians, CUDA-synchronised calls.
* ``weights``: the one random-weight filler and random models built on ``meta``.
* ``reference``: InternViT's published formula, once, with two sets of primitive operations: explicit
  ones (the tests' independent oracle) and the official release's (the compile comparison's baseline).
* ``backbone``: forward throughput / peak memory per kernel and dtype, FLOPs, the matmul floor.
* ``compile``: eager vs ``compile_blocks`` vs the official-style layer vs the matmul floor.
* ``export``: PyTorch vs onnxruntime latency of exported segmentors.
* ``probe``: one epoch of the plain linear probe (what the cached sweep avoids).
* ``memory``: peak memory of one training step of a config.
* ``load_6b``: the real-size 6B written in every checkpoint format, loaded and run.
* ``gpu_check``: the GPU checks (attention kernels, the whole compiled encoder, FSDP at reduced depth).
"""
