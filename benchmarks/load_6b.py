"""The real-size InternViT-6B (random bf16 weights) written in every released checkpoint format, then
loaded and run (``tools/benchmark_6b.py``: one :func:`run_one` per format, each in a fresh process)."""
import json
import statistics
import time
from pathlib import Path

import torch
from mmengine.logging import print_log

from .machine import rss_kb
from .timing import interleaved_times
from .weights import fill_random_


def write_checkpoints(workdir: Path, formats):
    """Random bf16 weights of the real 6B shapes as format A (``intern_vit_6b_224px.pth``, under
    ``module``), B (the Hugging Face 224px repo: two ``pytorch_model-*.bin`` shards, index json,
    config.json) and S (the layout of the 448px releases: three ``model-*.safetensors`` shards +
    ``model.safetensors.index.json``), those of ``formats``; returns {format: path}."""
    from perception.models import InternViT
    with torch.device('meta'):
        meta = InternViT('6b')
    shapes = {k: v.shape for k, v in meta.state_dict().items()}
    t0 = time.perf_counter()
    sd = {k: torch.empty(shape, dtype=torch.bfloat16) for k, shape in shapes.items()}
    fill_random_(sd.items(), torch.Generator().manual_seed(0))
    print_log(f'generated {sum(t.numel() for t in sd.values()) / 1e9:.2f} B bf16 parameters in '
              f'{time.perf_counter() - t0:.0f} s', logger='current')
    out = {}
    if 'A' in formats:
        t0 = time.perf_counter()
        p = workdir / 'intern_vit_6b_224px.pth'
        torch.save({'module': sd}, p)
        out['A'] = str(p)
        print_log(f'wrote format A {p} ({p.stat().st_size / 1e9:.2f} GB) in {time.perf_counter() - t0:.0f} s',
                  logger='current')
    for fmt in [f for f in ('B', 'S') if f in formats]:
        t0 = time.perf_counter()
        d = workdir / ('InternViT-6B-224px' if fmt == 'B' else 'InternViT-6B-224px-safetensors')
        d.mkdir(exist_ok=True)
        hf = {'cls_token': 'embeddings.class_embedding', 'pos_embed': 'embeddings.position_embedding',
              'patch_embed.proj.weight': 'embeddings.patch_embedding.weight',
              'patch_embed.proj.bias': 'embeddings.patch_embedding.bias'}

        def hf_name(k):
            if k in hf:
                return hf[k]
            k = k.replace('blocks.', 'encoder.layers.', 1)
            return k[:-len('.gamma')] if k.endswith(('ls1.gamma', 'ls2.gamma')) else k
        names = list(sd)
        n = 2 if fmt == 'B' else 3
        parts = [names[i * len(names) // n:(i + 1) * len(names) // n] for i in range(n)]
        weight_map = {}
        for i, part in enumerate(parts):
            if fmt == 'B':
                fname = f'pytorch_model-0000{i + 1}-of-0000{n}.bin'
                torch.save({hf_name(k): sd[k] for k in part}, d / fname)
            else:  # streamed one tensor at a time (safetensors' save_file copies a whole shard first)
                from perception.checkpoint.io import LazyTensor, write_safetensors
                fname = f'model-0000{i + 1}-of-0000{n}.safetensors'
                write_safetensors(d / fname, {hf_name(k): LazyTensor.wrap(sd[k]) for k in part},
                                  metadata={'format': 'pt'})
            weight_map.update({hf_name(k): fname for k in part})
        index = 'pytorch_model.bin.index.json' if fmt == 'B' else 'model.safetensors.index.json'
        (d / index).write_text(json.dumps({'metadata': {}, 'weight_map': weight_map}))
        (d / 'config.json').write_text(json.dumps({
            'architectures': ['InternVisionModel'], 'hidden_size': 3200, 'num_attention_heads': 25,
            'intermediate_size': 12800, 'num_hidden_layers': 48, 'image_size': 224, 'patch_size': 14,
            'qkv_bias': False, 'qk_normalization': True, 'layer_norm_eps': 1e-6, 'initializer_factor': 0.1,
            'drop_path_rate': 0.0, 'use_flash_attn': True, 'torch_dtype': 'bfloat16'}))
        out[fmt] = str(d)
        print_log(f'wrote format {fmt} {d} in {time.perf_counter() - t0:.0f} s', logger='current')
    return out


def run_one(path: str, sizes, repeats: int, compile_blocks: bool = False) -> dict:
    """In this (fresh) process: load, forward per size (eager, and compiled interleaved with it when
    ``compile_blocks``; the first call of each is a warm-up, the compiled one's compiles), peak RSS.
    Seconds and GiB."""
    import perception
    t0 = time.perf_counter()
    model = perception.load_backbone(path, frozen=True, dtype='bf16', attn_backend='sdpa')
    load_s = time.perf_counter() - t0
    res = {'path': path, 'load_s': load_s, 'rss_after_load_gib': rss_kb('VmRSS') / 2 ** 20, 'forward': {},
           'forward_compiled': {}, 'compile_s': {}}
    for s in sizes:
        x = torch.randn(1, 3, s, s, dtype=torch.bfloat16)

        def forward(mode):
            def run():
                model.set_compile_blocks(mode)
                with torch.no_grad():
                    model(x)
            return run
        modes = [False, 'force'] if compile_blocks else [False]
        for m in modes:  # warm-up; the compiled one's first call compiles
            t = time.perf_counter()
            forward(m)()
            if m:
                res['compile_s'][s] = time.perf_counter() - t
        times = interleaved_times([forward(m) for m in modes], repeats)  # load drifts hit both
        res['forward'][s] = statistics.median(times[0])
        if compile_blocks:
            res['forward_compiled'][s] = statistics.median(times[1])
    res['peak_rss_gib'] = rss_kb('VmHWM') / 2 ** 20
    return res
