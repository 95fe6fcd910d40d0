"""mmengine FlexibleRunner + DeepSpeedStrategy (ZeRO-2/3) on CPU, gloo.
Usage: torchrun --nproc_per_node 2 mm_ds.py STAGE [--no-preinit]
By default initialises torch.distributed via deepspeed (gloo) *before* the
runner, so mmengine's init_dist (which calls torch.cuda.set_device) is skipped."""
import os, sys, time
import torch, torch.nn as nn
from torch.utils.data import Dataset
from mmengine.model import BaseModel
from mmengine.hooks import Hook
from mmengine.runner._flexible_runner import FlexibleRunner
from mmengine.registry import MODELS, DATASETS, HOOKS

stage = int(sys.argv[1]) if len(sys.argv) > 1 else 2
preinit = '--no-preinit' not in sys.argv


@MODELS.register_module()
class ToyModel(BaseModel):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(16, 64), nn.ReLU(), nn.Linear(64, 4))

    def forward(self, inputs, targets=None, mode='loss'):
        out = self.net(inputs)
        if mode == 'loss':
            return dict(loss=nn.functional.mse_loss(out, targets))
        return [out]


@DATASETS.register_module()
class ToyDataset(Dataset):
    def __init__(self, n=256):
        g = torch.Generator().manual_seed(0)
        self.x = torch.randn(n, 16, generator=g)
        self.y = torch.randn(n, 4, generator=g)
        self.metainfo = {}

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return dict(inputs=self.x[i], targets=self.y[i])


@HOOKS.register_module()
class StepTimer(Hook):
    def before_train_iter(self, runner, batch_idx, data_batch=None):
        self.t = time.perf_counter()

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        dt = time.perf_counter() - self.t
        self.times = getattr(self, 'times', []) + [dt]
        if batch_idx % 5 == 0 or batch_idx == len(runner.train_dataloader) - 1:
            print(f'[rank{runner.rank}] zero{stage} iter{batch_idx} '
                  f'loss={outputs["loss"].item():.4f} step={dt*1000:.1f}ms', flush=True)

    def after_train(self, runner):
        ts = self.times[2:] or self.times
        eng = runner.model.model  # DeepSpeedEngine
        print(f'[rank{runner.rank}] zero{stage} DONE iters={len(self.times)} '
              f'mean_step(excl first 2)={sum(ts)/len(ts)*1000:.1f}ms '
              f'engine_optim={type(eng.optimizer).__name__} '
              f'zero_stage={eng.zero_optimization_stage()}', flush=True)


# Workaround 1: deepspeed>=0.19 removed deepspeed.runtime.fp16.onebit
# (OnebitAdam/OnebitLamb/ZeroOneAdam); mmengine 0.10.7's
# register_deepspeed_optimizers() imports it unconditionally -> replace it.
import mmengine._strategy.deepspeed as _mm_ds
try:
    import deepspeed.runtime.fp16.onebit  # noqa: F401
except ImportError:
    from mmengine.registry import OPTIMIZERS

    def _register_deepspeed_optimizers():
        from deepspeed.ops.adam import DeepSpeedCPUAdam, FusedAdam
        from deepspeed.ops.lamb import FusedLamb
        names = []
        for cls in (DeepSpeedCPUAdam, FusedAdam, FusedLamb):
            if cls.__name__ not in OPTIMIZERS.module_dict:
                OPTIMIZERS.register_module(module=cls)
            names.append(cls.__name__)
        return names
    _mm_ds.register_deepspeed_optimizers = _register_deepspeed_optimizers

# Workaround 2: mmengine's _init_dist_pytorch calls torch.cuda.set_device
# (fails without an NVIDIA driver). Initialising torch.distributed first makes
# BaseStrategy._setup_env skip _setup_distributed.
if preinit:
    import deepspeed
    deepspeed.init_distributed(dist_backend='gloo')

runner = FlexibleRunner(
    model=dict(type='ToyModel'),
    work_dir=f'/tmp/ds_exp/work_dirs/zero{stage}',
    strategy=dict(type='DeepSpeedStrategy',
                  zero_optimization=dict(stage=stage),
                  fp16=dict(enabled=False), bf16=dict(enabled=False),
                  train_micro_batch_size_per_gpu=8,
                  gradient_accumulation_steps=1),
    optim_wrapper=dict(type='DeepSpeedOptimWrapper',
                       optimizer=dict(type='AdamW', lr=1e-3)),
    train_dataloader=dict(dataset=dict(type='ToyDataset'),
                          sampler=dict(type='DefaultSampler', shuffle=True),
                          batch_size=8, num_workers=0,
                          collate_fn=dict(type='default_collate')),
    train_cfg=dict(by_epoch=True, max_epochs=1),
    custom_hooks=[dict(type='StepTimer')],
    default_hooks=dict(checkpoint=dict(type='CheckpointHook', interval=1)),
    launcher='pytorch',
    env_cfg=dict(dist_cfg=dict(backend='gloo')),
)
runner.train()
print(f'[rank{runner.rank}] TRAIN_OK zero{stage}', flush=True)
