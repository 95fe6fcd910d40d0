"""The ViT-Adapter at real size (``tools/benchmark_adapter.py``): peak memory of one training step of the
frozen InternViT + ``InternViTAdapter`` + UperNet, and the adapter's forward time over the same ViT
blocks alone, each configuration in a fresh process so that its peak resident set is its own.

Random weights, never a download. The model is built on the ``meta`` device and materialised with
its ViT part (patch embedding, position embedding, blocks) directly in bf16, the adapter and the heads
in fp32: a 6B never exists in fp32 (23.6 GB), as ``InternViTAdapter(weights_dtype='bf16')`` holds it
for the one-GPU recipe. Where the adapter has no ``weights_dtype`` argument the same dtypes are set
here (announced in the results), so the figures stand for that recipe either way.
"""
import inspect
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional, Union

import torch

from perception.layers.vision_transformer import parse_arch

from .machine import rss_kb
from .timing import interleaved_times
from .weights import fill_random_

ROOT = Path(__file__).resolve().parents[1]
GIB = 2.0 ** 30
#: the fork's ADE20K recipe (upernet_intern_vit_adapter_6b_512_80k_ade20k_bs16_lr4e-5.py): patch 16,
#: cffn / deform ratio 0.25, injector gamma 0, frozen ViT, activation checkpointing
RECIPE = dict(patch_size=16, deform_ratio=0.25, cffn_ratio=0.25, init_values=0., freeze_vit=True, with_cp=True)
#: its optimizer (the layer-wise decay changes learning rates, not memory)
OPTIMIZER = dict(type='AdamW', lr=4e-5, betas=(0.9, 0.999), weight_decay=0.05)
LOW = torch.bfloat16


def bench_arch(arch: Union[str, dict], depth: Optional[int] = None) -> dict:
    """The ViT's arch (preset name or dict) at ``depth`` blocks (default: its own)."""
    cfg = parse_arch(arch)
    if depth:
        cfg['num_layers'] = int(depth)
    return cfg


def has_weights_dtype() -> bool:
    """Whether ``InternViTAdapter`` takes ``weights_dtype`` (then the benchmark passes ``'bf16'``)."""
    from perception.models import InternViTAdapter
    return 'weights_dtype' in inspect.signature(InternViTAdapter.__init__).parameters


def backbone_config(arch: dict, img: int) -> dict:
    """The recipe's ``InternViTAdapter`` at ``arch``; the position grid kept at ``img / 16`` (the
    recipe's ``img_size=512``), interactions in four equal groups of blocks."""
    cfg = dict(type='InternViTAdapter', arch=dict(arch, patch_size=16, img_size=img), img_size=img,
               attn_backend='sdpa', **RECIPE)
    if has_weights_dtype():
        cfg['weights_dtype'] = 'bf16'
    return cfg


def segmentor_config(arch: dict, img: int, channels: int = 1536, num_classes: int = 150) -> dict:
    """The recipe's segmentor: UperNet (``channels``) on the four maps, an auxiliary FCN (``channels``,
    weight 0.4) on the stride-16 map; BN in one process (the fork's SyncBN is BN there)."""
    from mmengine.config import Config
    C = arch['embed_dims']
    bn = dict(type='BN', requires_grad=True)

    def ce(w):
        return dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=w)
    model = dict(
        type='EncoderDecoder',
        data_preprocessor=dict(type='SegDataPreProcessor', mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375],
                               bgr_to_rgb=True, pad_val=0, seg_pad_val=255, size=(img, img)),
        backbone=backbone_config(arch, img),
        decode_head=dict(type='UPerHead', in_channels=[C] * 4, in_index=[0, 1, 2, 3], pool_scales=(1, 2, 3, 6),
                         channels=channels, dropout_ratio=0.1, num_classes=num_classes, norm_cfg=bn,
                         align_corners=False, loss_decode=ce(1.0)),
        auxiliary_head=dict(type='FCNHead', in_channels=C, in_index=2, channels=channels, num_convs=1,
                            concat_input=False, dropout_ratio=0.1, num_classes=num_classes, norm_cfg=bn,
                            align_corners=False, loss_decode=ce(0.4)),
        train_cfg=dict(), test_cfg=dict(mode='whole'))
    return Config(dict(model=model, default_scope='mmseg'))


def materialize(model: torch.nn.Module, adapter, seed: int = 0) -> torch.nn.Module:
    """A model built on ``meta`` (``adapter`` its ``InternViTAdapter``, or the model itself) allocated on
    the CPU with the ViT part in bf16 (random: :func:`benchmarks.weights.fill_random_`) and everything
    else in fp32 with its constructors' and the adapter's own initialisation."""
    vit = dict(adapter.vit_parameters())
    for p in vit.values():
        p.data = p.data.to(LOW)  # on meta: no memory
    model.to_empty(device='cpu')
    vit_modules = set(adapter.patch_embed.modules()) | set(adapter.blocks.modules()) | {adapter}
    with torch.no_grad():
        fill_random_(adapter.vit_parameters(), torch.Generator().manual_seed(seed))
        for m in model.modules():
            if m not in vit_modules and hasattr(m, 'reset_parameters'):
                m.reset_parameters()  # to_empty leaves memory uninitialised (BN statistics included)
        adapter.init_adapter_weights()
    adapter.freeze_vit_part()
    wrong = [n for n, p in model.named_parameters() if p.dtype != (LOW if n.split('backbone.')[-1] in vit
                                                                   else torch.float32)]
    if wrong:
        raise RuntimeError(f'parameters not in the intended dtype (ViT bf16, the rest fp32): {wrong[:5]}')
    return model


def build_segmentor(arch: dict, img: int, channels: int, num_classes: int, seed: int = 0):
    """The recipe's segmentor with random weights, never in fp32 as a whole (:func:`materialize`)."""
    from mmseg.registry import MODELS

    from perception.config import build_model
    cfg = segmentor_config(arch, img, channels, num_classes)
    torch.manual_seed(seed)
    model = build_model(cfg, device='meta')
    materialize(model, model.backbone, seed)
    model.data_preprocessor = MODELS.build(cfg.model.data_preprocessor)  # its mean / std buffers
    return model.train()


def random_seg_batch(batch: int, img: int, num_classes: int, seed: int = 0) -> dict:
    """A segmentor's ``data`` (uint8 images, labels in ``[0, num_classes)``), as a dataloader gives it."""
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample
    g = torch.Generator().manual_seed(seed)
    samples = []
    for _ in range(batch):
        s = SegDataSample()
        s.gt_sem_seg = PixelData(data=torch.randint(0, num_classes, (1, img, img), generator=g))
        s.set_metainfo(dict(img_shape=(img, img), ori_shape=(img, img), pad_shape=(img, img)))
        samples.append(s)
    return dict(inputs=[torch.randint(0, 256, (3, img, img), dtype=torch.uint8, generator=g) for _ in range(batch)],
                data_samples=samples)


def nbytes(tensors) -> int:
    return sum(t.numel() * t.element_size() for t in tensors)


def train_step(arch: Union[str, dict] = '6b', depth: Optional[int] = None, img: int = 512, batch: int = 1,
               channels: int = 1536, num_classes: int = 150, seed: int = 0) -> Dict:
    """ONE training step in this (fresh) process: build, forward (bf16 autocast), backward, AdamW
    update of the trainable parameters (adapter + heads). GiB: the peak resident set (``VmHWM``) after
    each phase, and what the peak holds by construction: ViT weights (bf16), trainable weights, their
    gradients, the AdamW state (counted in the optimizer after the step); the rest (activations,
    temporaries, allocator slack) is the peak less those and less the process before the build.

    At batch 1 the heads' BatchNorms run on their running statistics (eval mode): UperNet's scale-1
    pooling branch leaves one value per channel, which BatchNorm cannot train on (``bn_eval`` in the
    result; the memory is that of the same step)."""
    from mmengine.optim import build_optim_wrapper
    a = bench_arch(arch, depth)
    start = rss_kb('VmRSS') / 2 ** 20
    t0 = time.perf_counter()
    model = build_segmentor(a, img, channels, num_classes, seed)
    bn_eval = batch == 1
    if bn_eval:
        for m in model.modules():
            if isinstance(m, (torch.nn.BatchNorm2d, torch.nn.SyncBatchNorm)):
                m.eval()
    built = rss_kb('VmHWM') / 2 ** 20
    vit = [p for _, p in model.backbone.vit_parameters()]
    trainable = [p for p in model.parameters() if p.requires_grad]
    wrapper = build_optim_wrapper(model, dict(type='OptimWrapper', optimizer=dict(OPTIMIZER)))
    data = random_seg_batch(batch, img, num_classes, seed)
    t1 = time.perf_counter()
    with torch.autocast('cpu', dtype=torch.bfloat16):
        d = model.data_preprocessor(data, True)
        loss, _ = model.parse_losses(model(**d, mode='loss'))
    fwd = rss_kb('VmHWM') / 2 ** 20
    t2 = time.perf_counter()
    loss.backward()
    bwd = rss_kb('VmHWM') / 2 ** 20
    t3 = time.perf_counter()
    wrapper.step()
    t4 = time.perf_counter()
    peak = rss_kb('VmHWM') / 2 ** 20
    state = [t for s in wrapper.optimizer.state.values() for t in s.values() if torch.is_tensor(t)]
    parts = dict(vit_weights_gib=nbytes(vit) / GIB, trainable_weights_gib=nbytes(trainable) / GIB,
                 gradients_gib=nbytes(p.grad for p in trainable if p.grad is not None) / GIB,
                 optimizer_state_gib=nbytes(state) / GIB)
    return dict(arch_width=a['embed_dims'], depth=a['num_layers'], img=img, batch=batch, channels=channels,
                bn_eval=bn_eval, weights_dtype_arg=has_weights_dtype(), vit_params_m=sum(p.numel() for p in vit) / 1e6,
                trainable_params_m=sum(p.numel() for p in trainable) / 1e6, start_gib=start, after_build_gib=built,
                after_forward_gib=fwd, after_backward_gib=bwd, peak_gib=peak,
                rest_gib=peak - start - sum(parts.values()), **parts,
                build_s=t1 - t0, forward_s=t2 - t1, backward_s=t3 - t2, step_s=t4 - t3, loss=float(loss),
                threads=torch.get_num_threads(), load_avg=os.getloadavg()[0])


class ModuleTimer:
    """Wall time spent in groups of modules per call of a function, through forward (pre-)hooks: a
    group's time is the sum over its modules (none of a group may contain another of the same group)."""

    def __init__(self, groups: Dict[str, List[torch.nn.Module]]):
        self.total = {g: 0.0 for g in groups}
        self.handles, self.started = [], {}
        for g, mods in groups.items():
            for m in mods:
                self.handles.append(m.register_forward_pre_hook(self._pre))
                self.handles.append(m.register_forward_hook(lambda mod, i, o, g=g: self._post(mod, g)))

    def _pre(self, mod, inputs):
        self.started[id(mod)] = time.perf_counter()

    def _post(self, mod, group):
        self.total[group] += time.perf_counter() - self.started.pop(id(mod))

    def reset(self):
        self.total = {g: 0.0 for g in self.total}

    def remove(self):
        for h in self.handles:
            h.remove()


def forward_times(arch: Union[str, dict] = '6b', depth: Optional[int] = None, img: int = 512, batch: int = 1,
                  repeats: int = 3, warmup: int = 1, seed: int = 0) -> Dict:
    """In this (fresh) process: the adapter's forward and the same ViT blocks alone (its patch and
    position embedding, no class token, no adapter, tokens in bf16 throughout), timed in turn (a, b, a, b, ...), bf16 autocast,
    ``torch.no_grad``, the ViT's weights bf16. Inside the adapter's calls, forward hooks time the ViT
    blocks, the injectors, the extractors (ConvFFN included), the spatial prior module and the
    multi-scale deformable attention modules (``MSDeformAttn``; ``deform sampling`` = those less
    their four linears: the CPU ``grid_sample`` path, offsets and softmax). Seconds, medians."""
    from perception.layers.deform_attn import MSDeformAttn
    from perception.models import InternViTAdapter
    a = bench_arch(arch, depth)
    cfg = backbone_config(a, img)
    cfg.pop('type')
    torch.manual_seed(seed)
    with torch.device('meta'):
        model = InternViTAdapter(**cfg)
    materialize(model, model, seed).eval()
    deform = [m for m in model.modules() if isinstance(m, MSDeformAttn)]
    inter = list(model.interactions)
    timer = ModuleTimer({
        'vit blocks': list(model.blocks), 'spm': [model.spm], 'injectors': [b.injector for b in inter],
        'extractors': [e for b in inter for e in [b.extractor, *(b.extra_extractors or ())]],
        'deform attn': deform,
        'deform linears': [lin for m in deform for lin in (m.sampling_offsets, m.attention_weights, m.value_proj,
                                                           m.output_proj)]})
    x = torch.randn(batch, 3, img, img, generator=torch.Generator().manual_seed(seed))
    parts = []

    def adapter():
        timer.reset()
        with torch.no_grad(), torch.autocast('cpu', dtype=torch.bfloat16):
            model(x)
        parts.append(dict(timer.total))

    def vit_alone():  # the tokens stay in the ViT's dtype throughout, as InternViT(weights_dtype='bf16') runs them
        with torch.no_grad(), torch.autocast('cpu', dtype=torch.bfloat16):
            t, _ = model.prepare_tokens(x)
            t = t.to(model.pos_embed.dtype)
            for blk in model.blocks:
                t = blk(t)
    vit_t, ad_t = interleaved_times([vit_alone, adapter], repeats, warmup)
    timer.remove()
    parts = parts[warmup:]
    med = {g: statistics.median(p[g] for p in parts) for g in parts[0]}
    med['deform sampling'] = statistics.median(p['deform attn'] - p['deform linears'] for p in parts)
    vit_s, ad_s = statistics.median(vit_t), statistics.median(ad_t)
    return dict(arch_width=a['embed_dims'], depth=a['num_layers'], img=img, batch=batch, repeats=repeats,
                weights_dtype_arg=has_weights_dtype(), vit_alone_s=vit_s, adapter_s=ad_s,
                added_s=ad_s - vit_s, added_pct=100 * (ad_s - vit_s) / vit_s, parts_s=med,
                deform_calls=len(deform), threads=torch.get_num_threads(), load_avg=os.getloadavg()[0],
                malloc_env={k: os.environ.get(k) for k in MALLOC_ENV['keep']},
                rss_peak_gib=rss_kb('VmHWM') / 2 ** 20)


#: glibc malloc settings (read when a process starts): ``default``, or ``keep``: large blocks come from the heap
#: (no mmap) and freed memory is not handed back to the kernel, so the forward's big temporaries reuse pages the
#: process already has instead of faulting in new ones, which on these virtual machines costs several times the
#: arithmetic (benchmarks/page_reuse.py). PyTorch's own CPU launcher (``torch.backends.xeon.run_cpu``) swaps in
#: jemalloc / tcmalloc for the same reason.
MALLOC_ENV = {'default': {}, 'keep': {'MALLOC_MMAP_MAX_': '0', 'MALLOC_TRIM_THRESHOLD_': str(2 ** 40)}}


def in_subprocess(func: str, malloc: str = 'default', **kw) -> Dict:
    """``benchmarks.adapter.<func>(**kw)`` in a fresh interpreter (its own peak RSS) with the glibc malloc
    settings ``malloc`` (:data:`MALLOC_ENV`); its result, with ``malloc`` recorded."""
    code = ('import json,sys; from benchmarks import adapter; '
            f'print("@@" + json.dumps(adapter.{func}(**json.loads(sys.argv[1]))))')
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get('PYTHONPATH')])))
    for k in MALLOC_ENV['keep']:
        env.pop(k, None)
    env.update(MALLOC_ENV[malloc])
    proc = subprocess.run([sys.executable, '-c', code, json.dumps(kw)], capture_output=True, text=True, env=env)
    for line in proc.stdout.splitlines():
        if line.startswith('@@'):
            return dict(json.loads(line[2:]), malloc=malloc)
    raise RuntimeError(f'{func}({kw}) failed in its subprocess (exit {proc.returncode}):\n{proc.stderr[-3000:]}')


def linear_estimate(rows: List[Dict], key: str, depth: int) -> Optional[float]:
    """``key`` at ``depth`` blocks, linear in the block count through the shallowest and the deepest
    rows (None with fewer than two depths)."""
    rows = sorted(rows, key=lambda r: r['depth'])
    lo, hi = rows[0], rows[-1]
    if hi['depth'] == lo['depth']:
        return None
    slope = (hi[key] - lo[key]) / (hi['depth'] - lo['depth'])
    return hi[key] + slope * (depth - hi['depth'])


def model_state(arch: Union[str, dict] = '6b', depth: Optional[int] = None, img: int = 512, channels: int = 1536,
                num_classes: int = 150) -> Dict:
    """Exact sizes from a build on ``meta`` (no memory): ViT parameters (held in bf16) and the trainable
    ones (fp32 weights + gradients + AdamW's two moments = 16 bytes each): what a step holds at least."""
    from perception.config import build_model
    a = bench_arch(arch, depth)
    model = build_model(segmentor_config(a, img, channels, num_classes), device='meta')
    vit = sum(p.numel() for _, p in model.backbone.vit_parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return dict(depth=a['num_layers'], channels=channels, vit_params_m=vit / 1e6, trainable_params_m=trainable / 1e6,
                vit_weights_gib=vit * 2 / GIB, trainable_state_gib=trainable * 16 / GIB)


def memory_table(rows: List[Dict]) -> str:
    """The rows of :func:`train_step` as a markdown table."""
    lines = ['| depth | batch | ViT weights GiB (bf16) | trainable M params | trainable weights GiB | gradients GiB | '
             'AdamW state GiB | rest GiB | process before build GiB | peak after build | after forward | '
             'after backward | **peak RSS GiB** | forward s | backward s | update s |', '|' + '---|' * 16]
    for r in rows:
        lines.append(f"| {r['depth']} | {r['batch']} | {r['vit_weights_gib']:.2f} | {r['trainable_params_m']:.1f} | "
                     f"{r['trainable_weights_gib']:.2f} | {r['gradients_gib']:.2f} | {r['optimizer_state_gib']:.2f} | "
                     f"{r['rest_gib']:.2f} | {r['start_gib']:.2f} | {r['after_build_gib']:.2f} | "
                     f"{r['after_forward_gib']:.2f} | {r['after_backward_gib']:.2f} | **{r['peak_gib']:.2f}** | "
                     f"{r['forward_s']:.1f} | {r['backward_s']:.1f} | {r['step_s']:.1f} |")
    return '\n'.join(lines)


def speed_table(rows: List[Dict]) -> str:
    """The rows of :func:`forward_times` as a markdown table; the MSDeformAttn shares are of the adapter's
    added time and of its whole forward."""
    lines = ['| depth | malloc | ViT alone s | adapter s | added s | **added** | in the adapter: ViT blocks s | spm s | '
             'injectors s | extractors s | MSDeformAttn s | of which sampling s | MSDeformAttn / added | '
             'MSDeformAttn / adapter |', '|' + '---|' * 14]
    for r in rows:
        p = r['parts_s']

        def share(s):  # a noisy run can measure no added time at all
            return f"{100 * p['deform attn'] / s:.0f}%" if s > 0 else 'n/a'
        lines.append(f"| {r['depth']} | {r.get('malloc', 'default')} | {r['vit_alone_s']:.3f} | {r['adapter_s']:.3f} | {r['added_s']:.3f} | "
                     f"**{r['added_pct']:+.1f}%** | {p['vit blocks']:.3f} | {p['spm']:.3f} | {p['injectors']:.3f} | "
                     f"{p['extractors']:.3f} | {p['deform attn']:.3f} | {p['deform sampling']:.3f} | "
                     f"{share(r['added_s'])} | {share(r['adapter_s'])} |")
    return '\n'.join(lines)
