"""PyTorch vs onnxruntime latency of an exported segmentor, in one process (``tools/benchmark_export.py``)."""
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Dict, Optional, Sequence

import torch
from mmengine.logging import print_log

from .timing import interleaved_medians


def benchmark_export(segmentor, name: str, size: int = 504, repeats: int = 10, warmup: int = 2,
                     work_dir: Optional[str] = None, keep: bool = False) -> Dict:
    """Export ``segmentor`` to ONNX, then time one ``size`` x ``size`` forward (batch 1, fp32) in
    PyTorch (``encode_decode``) and in onnxruntime, interleaved in this process. Medians in ms;
    ``load_avg`` (1-minute load average) tells whether something else competed for the CPU."""
    from perception.deploy.bundle import open_session
    from perception.export import INPUT_NAME, ONNX_FILE, export_model, reference_logits
    p = segmentor.backbone.patch_size
    size = int(round(size / p)) * p
    own = work_dir is None
    work = Path(work_dir or tempfile.mkdtemp(prefix='perception-bench-'))
    try:
        t = time.perf_counter()
        m = export_model(segmentor, work / name, ('onnx',), slide=((size, size), (size, size)),
                         verify_sizes=[(1, size, size)])
        export_s = time.perf_counter() - t
        x = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(1))
        sess = open_session(work / name / ONNX_FILE)
        xn = x.numpy()
        load = os.getloadavg()[0]
        torch_ms, ort_ms = interleaved_medians([lambda: reference_logits(segmentor, x),
                                                lambda: sess.run(None, {INPUT_NAME: xn})], repeats, warmup)
        load = max(load, os.getloadavg()[0])
        params = sum(t.numel() for n, t in segmentor.named_parameters() if not n.startswith('auxiliary_head.'))
        row = dict(name=name, params_m=params / 1e6, size=size, export_s=export_s, torch_ms=torch_ms,
                   ort_ms=ort_ms, threads=torch.get_num_threads(), load_avg=load,
                   max_abs_diff=m['verification']['onnxruntime'][0]['max_abs_diff'],
                   onnx_mib=sum(v['bytes'] for k, v in m['files'].items() if k.startswith(ONNX_FILE)) / 2 ** 20)
        print_log(f'{name}: PyTorch {torch_ms:.1f} ms, onnxruntime {ort_ms:.1f} ms (median of {repeats})',
                  logger='current')
        return row
    finally:
        if own and not keep:
            shutil.rmtree(work, ignore_errors=True)


def latency_table(rows: Sequence[Dict]) -> str:
    """Markdown table of :func:`benchmark_export` rows."""
    lines = ['| segmentor | params (M) | input | PyTorch fp32 (ms) | onnxruntime fp32 (ms) | speed-up | '
             'max abs logit diff | export (s) | ONNX size (MiB) |',
             '|---|---|---|---|---|---|---|---|---|']
    if any(r.get('load_avg', 0) > (os.cpu_count() or 1) * 0.75 + 0.5 for r in rows):
        print_log('the load average was high during the benchmark: other processes competed for the CPU',
                  logger='current', level=30)
    for r in rows:
        lines.append(f"| {r['name']} | {r['params_m']:.1f} | 1x3x{r['size']}x{r['size']} | {r['torch_ms']:.1f} | "
                     f"{r['ort_ms']:.1f} | {r['torch_ms'] / r['ort_ms']:.2f}x | {r['max_abs_diff']:.1e} | "
                     f"{r['export_s']:.0f} | {r['onnx_mib']:.0f} |")
    return '\n'.join(lines)
