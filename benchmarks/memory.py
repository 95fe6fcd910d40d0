"""Peak memory of one training step of a segmentation config at real size (``tools/memory_step.py``)."""
import contextlib
import time
from typing import Dict, Optional

import torch

from perception.layers.vision_transformer import parse_arch

from .machine import rss_kb


def train_step_memory(config: str, img: int = 504, batch: int = 2, layers: Optional[int] = None,
                      device: str = 'cpu', compute: str = 'auto', seed: int = 0) -> Dict:
    """Peak memory of ONE training step of ``config`` at real size with random weights: build (the
    config's ``weights_dtype`` backbone included), forward, backward, optimizer update of the trainable
    parameters. Returns GiB at each phase: the process's peak RSS (``VmHWM``) on a CPU,
    ``max_memory_allocated`` on a GPU, with the parts (backbone weights, trainable weights + grads +
    AdamW state) counted from the model.

    ``compute``: 'bf16' (autocast, the GPU recipe), 'fp32' (no autocast; a low-precision backbone
    computes in fp32 one module at a time, ``export.lowmem.fp32_compute``: for CPUs without native
    bf16, where emulated bf16 is many times slower; fp32 activations make it an upper bound), 'auto'
    (bf16 on CUDA or a CPU with native bf16, else fp32). ``layers``: a shallower backbone of the same
    width (for quick checks; the budget is measured at full depth)."""
    from mmengine.optim import build_optim_wrapper
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample

    from perception.config import build_model, load_config, strip_pretrained
    from perception.engine.optim_wrapper import cpu_has_native_bf16
    from perception.export.lowmem import fp32_compute
    cfg = load_config(config)
    strip_pretrained(cfg.model)
    if layers:
        arch = dict(parse_arch(cfg.model.backbone.arch), num_layers=int(layers))
        cfg.model.backbone.arch = arch
        n = int(layers)
        k = len(cfg.model.backbone.out_indices)  # the same number of taps, spread over the depth
        cfg.model.backbone.out_indices = tuple(min(n - 1, max(0, (i + 1) * n // k - 1)) for i in range(k))
    if compute == 'auto':
        compute = 'bf16' if device.startswith('cuda') or cpu_has_native_bf16() else 'fp32'
    cuda = device.startswith('cuda')
    gib = 2.0 ** 30

    def peak():
        return torch.cuda.max_memory_allocated() / gib if cuda else rss_kb('VmHWM') / 2 ** 20
    torch.manual_seed(seed)
    t0 = time.perf_counter()
    before = peak()
    model = build_model(cfg)
    model.init_weights()
    model.to(device).train()
    built = peak()
    bb = sum(p.numel() * p.element_size() for p in model.backbone.parameters())
    trainable = [p for p in model.parameters() if p.requires_grad]
    n_train = sum(p.numel() for p in trainable)
    wrapper = build_optim_wrapper(model, dict(type='OptimWrapper', optimizer=dict(cfg.optim_wrapper.optimizer)))
    g = torch.Generator().manual_seed(seed)
    nc = int(cfg.model.decode_head.num_classes)
    samples = []
    for _ in range(batch):
        s = SegDataSample()
        s.gt_sem_seg = PixelData(data=torch.randint(0, nc, (1, img, img), generator=g))
        s.set_metainfo(dict(img_shape=(img, img), ori_shape=(img, img), pad_shape=(img, img)))
        samples.append(s)
    data = dict(inputs=[torch.randint(0, 256, (3, img, img), dtype=torch.uint8, generator=g) for _ in range(batch)],
                data_samples=samples)
    low_bb = getattr(model.backbone, 'weights_dtype', None) is not None
    ctx = contextlib.ExitStack()
    if compute == 'bf16':
        ctx.enter_context(torch.autocast('cuda' if cuda else 'cpu', dtype=torch.bfloat16))
    elif low_bb:
        ctx.enter_context(fp32_compute(model.backbone))
    t1 = time.perf_counter()
    with ctx:
        d = model.data_preprocessor(data, True)
        losses = model(**d, mode='loss')
        loss, _ = model.parse_losses(losses)
    fwd = peak()
    t2 = time.perf_counter()
    wrapper.update_params(loss)
    if cuda:
        torch.cuda.synchronize()
    t3 = time.perf_counter()
    step = peak()
    return dict(config=str(config), img=img, batch=batch, device=device, compute=compute,
                layers=model.backbone.num_layers, backbone_dtype=str(next(model.backbone.parameters()).dtype),
                backbone_weights_gib=bb / gib, trainable_params_m=n_train / 1e6,
                trainable_state_gib=n_train * 4 * 4 / gib,  # fp32 weights + grads + AdamW exp_avg, exp_avg_sq
                start_gib=before, after_build_gib=built, after_forward_gib=fwd, after_step_gib=step,
                build_s=t1 - t0, forward_s=t2 - t1, backward_update_s=t3 - t2, loss=float(loss))
