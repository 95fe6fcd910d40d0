"""InternVL-14B's memory by part and phase, and the peak resident memory of each phase's load and run.

    python -m benchmarks.internvl_clip_memory [--vit-layers 4] [--qllama-layers 4] [--workdir DIR] [--batch 8]
    python -m benchmarks.internvl_clip_memory --full      # the real depth: 27.7 GB of disk, up to ~16 GB RSS

1. The table: parameters of each part of the real 14B (built on the ``meta`` device, nothing allocated)
   and what each phase holds in bf16 (``lm_head`` and ``itm_head`` are never loaded).
2. The measurement: random bf16 weights at the real widths (all 48 / 32 layers with ``--full``, else
   ``--vit-layers`` / ``--qllama-layers``) written in the released layout (``config.json``, sharded
   ``model-*.safetensors`` + index; streamed one tensor at a time, generated as written), then, each in a
   fresh process, ``perception.load_internvl_clip(parts=...)`` and one forward of the phase (text: a
   batch of 80-token prompts; vision: 224 px images -> ViT tokens + InternVL-C; queries: InternVL-G
   from those tokens), with the process's peak resident set (VmHWM). At reduced depth the full-depth
   peak is estimated as the phase's full parameter bytes + the measured overhead (peak - parameters).
"""
import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

PHASES = {'text': ('text',), 'vision': ('vision',), 'queries': ('queries',)}
GIB = 2 ** 30


def config(vit_layers=None, qllama_layers=None) -> dict:
    from perception.models.internvl_clip import CONFIG_14B
    cfg = dict(CONFIG_14B, vision=dict(CONFIG_14B['vision']))
    if vit_layers:
        cfg['vision']['num_layers'] = vit_layers
    if qllama_layers:
        cfg['num_layers'] = qllama_layers
    return cfg


def part_table(cfg=None):
    """Rows (name, parameters) of the 14B's parts and phases (meta device: nothing allocated)."""
    from perception.models.internvl_clip import InternVLCLIP
    cfg = cfg or config()
    rows = []

    def count(parts):
        with torch.device('meta'):
            m = InternVLCLIP(cfg, parts)
        return sum(p.numel() for p in m.parameters())
    for name, parts in (('text phase (embeddings, QLLaMA w/o cross-attn, text_projection)', ('text',)),
                        ('vision phase (InternViT-6B + clip_projector)', ('vision',)),
                        ('queries phase (QLLaMA w/o embeddings + cross-attn, queries, both projectors)', ('queries',)),
                        ('InternVL-C at once (text + vision)', ('text', 'vision')),
                        ('InternVL-G at once (text + vision + queries)', ('text', 'vision', 'queries'))):
        rows.append((name, count(parts)))
    vocab, hidden = cfg['vocab_size'], cfg['hidden_size']
    rows.append(('never loaded: qllama.lm_head + itm_head', vocab * hidden + 2 * hidden + 2))
    return rows


def release_name(k: str) -> str:
    """A name of :class:`InternVLCLIP` in the released InternVL-14B-224px layout."""
    if k.startswith('vision.'):
        k = k[len('vision.'):]
        emb = {'cls_token': 'embeddings.class_embedding', 'pos_embed': 'embeddings.position_embedding',
               'patch_embed.proj.weight': 'embeddings.patch_embedding.weight',
               'patch_embed.proj.bias': 'embeddings.patch_embedding.bias'}
        if k in emb:
            return 'vision_model.' + emb[k]
        k = k.replace('blocks.', 'encoder.layers.', 1)
        return 'vision_model.' + (k[:-len('.gamma')] if k.endswith('.gamma') else k)
    if k.startswith('qllama.'):
        return 'qllama.model.' + k[len('qllama.'):]
    return k


def write_random_release(folder: Path, cfg: dict, shards: int = 3):
    """Random bf16 weights of ``cfg`` in the released layout, each tensor generated as it is written."""
    from perception.checkpoint.io import LazyTensor, write_safetensors
    from perception.models.internvl_clip import InternVLCLIP
    with torch.device('meta'):
        m = InternVLCLIP(cfg)
    shapes = {release_name(k): v.shape for k, v in m.state_dict().items()}
    shapes['qllama.lm_head.weight'] = torch.Size((cfg['vocab_size'], cfg['hidden_size']))
    shapes.update({'itm_head.weight': torch.Size((2, cfg['hidden_size'])), 'itm_head.bias': torch.Size((2,))})
    gen = torch.Generator().manual_seed(0)

    def make(name, shape):
        def load():
            t = torch.empty(shape, dtype=torch.bfloat16)
            if t.ndim <= 1:
                return t.fill_(1.0 if 'norm' in name else 0.1)
            return t.normal_(0, 0.02, generator=gen)
        return LazyTensor(shape, torch.bfloat16, load)
    names = sorted(shapes)
    folder.mkdir(parents=True, exist_ok=True)
    weight_map = {}
    for i in range(shards):
        part = names[i * len(names) // shards:(i + 1) * len(names) // shards]
        fname = f'model-{i + 1:05d}-of-{shards:05d}.safetensors'
        write_safetensors(folder / fname, {k: make(k, shapes[k]) for k in part}, metadata={'format': 'pt'})
        weight_map.update({k: fname for k in part})
    (folder / 'model.safetensors.index.json').write_text(json.dumps({'metadata': {}, 'weight_map': weight_map}))
    v = cfg['vision']
    (folder / 'config.json').write_text(json.dumps({
        'model_type': 'internvl', 'clip_embed_dim': cfg['clip_embed_dim'], 'attn_pool_num_heads': 16,
        'num_query_token': cfg['num_query_token'], 'cross_attention_frequency': 2, 'use_backbone_lora': 0,
        'use_qllama_lora': 0, 'force_image_size': None,
        'vision_config': {'hidden_size': v['embed_dims'], 'num_hidden_layers': v['num_layers'],
                          'num_attention_heads': v['num_heads'], 'intermediate_size': v['feedforward_channels'],
                          'image_size': v['img_size'], 'patch_size': v['patch_size'], 'qkv_bias': False,
                          'qk_normalization': True, 'layer_norm_eps': 1e-6, 'initializer_factor': 0.1},
        'qllama_config': {'vocab_size': cfg['vocab_size'], 'hidden_size': cfg['hidden_size'],
                          'num_hidden_layers': cfg['num_layers'], 'num_attention_heads': cfg['num_heads'],
                          'intermediate_size': cfg['intermediate_size'], 'rms_norm_eps': 1e-6, 'hidden_act': 'silu'}}))
    return folder


def run_phase(path: str, phase: str, batch: int) -> dict:
    """In this (fresh) process: load one phase in bf16 and run it once; seconds and GiB."""
    import perception
    from .machine import rss_kb
    t0 = time.perf_counter()
    model = perception.load_internvl_clip(path, parts=PHASES[phase], dtype='bf16', attn_backend='sdpa')
    res = {'phase': phase, 'load_s': time.perf_counter() - t0,
           'params_gib': sum(p.numel() * p.element_size() for p in model.parameters()) / GIB,
           'rss_after_load_gib': rss_kb('VmRSS') / 2 ** 20}
    t0 = time.perf_counter()
    with torch.no_grad():
        if phase == 'text':
            ids = torch.randint(3, model.config['vocab_size'], (batch, 80))
            ids[:, 0], ids[:, 60], ids[:, 61:] = 1, 2, 0
            model.encode_text(ids)
        else:
            grid = model.config['vision']['img_size'] // model.config['vision']['patch_size']
            if phase == 'vision':
                model.encode_image(torch.randn(batch, 3, 224, 224), 'InternVL-C')
            else:
                tokens = torch.randn(batch, 1 + grid * grid, model.config['vision']['embed_dims'], dtype=torch.bfloat16)
                model.encode_image_tokens(tokens, 'InternVL-G')
    res['forward_s'] = time.perf_counter() - t0
    res['peak_rss_gib'] = rss_kb('VmHWM') / 2 ** 20
    return res


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--vit-layers', type=int, default=4)
    p.add_argument('--qllama-layers', type=int, default=4)
    p.add_argument('--full', action='store_true', help='the real depth (48 ViT / 32 QLLaMA layers)')
    p.add_argument('--batch', type=int, default=8)
    p.add_argument('--phases', nargs='+', default=list(PHASES), choices=list(PHASES))
    p.add_argument('--workdir', help='where to write the weights (default: a temp dir, removed after)')
    p.add_argument('--child', nargs=2, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        print('@@' + json.dumps(run_phase(args.child[0], args.child[1], args.batch)), flush=True)
        return
    from .machine import machine_line
    print(f'# measured on {machine_line()}')
    print('| part / phase of InternVL-14B-224px | parameters | bf16 GiB |\n|---|---|---|')
    full_rows = dict(part_table())
    for name, n in full_rows.items():
        print(f'| {name} | {n / 1e9:.3f} B | {2 * n / GIB:.2f} |')
    cfg = config() if args.full else config(args.vit_layers, args.qllama_layers)
    work = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix='internvl_mem_'))
    try:
        t0 = time.perf_counter()
        folder = write_random_release(work / 'InternVL-14B-224px-random', cfg)
        depth = f"{cfg['vision']['num_layers']} ViT / {cfg['num_layers']} QLLaMA layers"
        print(f'\nwrote random bf16 weights ({depth}, real widths) in {time.perf_counter() - t0:.0f} s')
        print(f'\n| phase ({depth}, batch {args.batch}) | load s | forward s | parameters GiB | peak RSS GiB '
              '| full-depth estimate GiB |\n|---|---|---|---|---|---|')
        names = {'text': 'text phase', 'vision': 'vision phase', 'queries': 'queries phase'}
        for phase in args.phases:
            out = subprocess.run([sys.executable, '-m', 'benchmarks.internvl_clip_memory', '--batch', str(args.batch),
                                  '--child', str(folder), phase], capture_output=True, text=True,
                                 cwd=Path(__file__).resolve().parents[1])
            line = next((ln for ln in out.stdout.splitlines() if ln.startswith('@@')), None)
            if line is None:
                raise SystemExit(f'phase {phase} failed:\n{out.stderr[-3000:]}')
            r = json.loads(line[2:])
            full = next(2 * n / GIB for k, n in full_rows.items() if k.startswith(names[phase]))
            est = full + r['peak_rss_gib'] - r['params_gib']
            print(f"| {phase} | {r['load_s']:.1f} | {r['forward_s']:.1f} | {r['params_gib']:.2f} | "
                  f"{r['peak_rss_gib']:.2f} | {est:.2f} |")
    finally:
        if not args.workdir:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == '__main__':
    main()
