"""Scaling out: DDP on CPU (gloo), FSDP wrap units and names, the FSDP/DeepSpeed configs, the memory plan."""
import glob
import json
import os
import os.path as osp
import re
import subprocess
from pathlib import Path

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope

from conftest import TINY
from perception.datasets.demo_data import make_demo_dataset

ROOT = Path(__file__).resolve().parents[1]


def _run_ddp(cfg_path, work_dir, data_root, extra=(), port=29541):
    env = dict(os.environ, OMP_NUM_THREADS='1', PORT=str(port))
    args = [f'train_dataloader.dataset.data_root={data_root}', f'val_dataloader.dataset.data_root={data_root}',
            f'test_dataloader.dataset.data_root={data_root}', *extra]
    return subprocess.run(['bash', str(ROOT / 'tools/dist_train.sh'), str(cfg_path), '2', '--work-dir', str(work_dir),
                           '--cfg-options', *args], capture_output=True, text=True, env=env, timeout=600)


def _losses(work_dir):
    vals = []
    for f in sorted(glob.glob(osp.join(work_dir, '*', 'vis_data', 'scalars.json'))):
        for line in open(f):
            rec = json.loads(line)
            if 'loss' in rec:
                vals.append((rec['step'], rec['loss']))
    return [v for _, v in sorted(vals)]


@pytest.mark.slow
def test_ddp_two_ranks_learn_stay_in_sync_and_resume(tmp_path):
    data = make_demo_dataset(tmp_path / 'data', seed=4, num_train=16, num_val=2)
    cfg = tmp_path / 'ddp.py'
    cfg.write_text(f"""_base_ = ['{ROOT}/mmcfg/demo/linear_internvit-tiny_1xb8-1k_demo-shapes-112x112.py']
train_dataloader = dict(batch_size=4, num_workers=0, persistent_workers=False)
val_dataloader = dict(num_workers=0, persistent_workers=False)
test_dataloader = dict(num_workers=0, persistent_workers=False)
param_scheduler = [dict(type='ConstantLR', factor=1.0, by_epoch=False)]
train_cfg = dict(max_iters=12, val_interval=100)
default_hooks = dict(logger=dict(interval=1), checkpoint=dict(interval=12, max_keep_ckpts=3))
custom_hooks = [dict(type='ParamSyncCheckHook', interval=4)]
randomness = dict(seed=0)
""")
    out = _run_ddp(cfg, tmp_path / 'w', data)
    assert out.returncode == 0, out.stderr[-3000:]
    log = open(glob.glob(str(tmp_path / 'w' / '*' / '*.log'))[0]).read()
    assert 'Distributed training: True' in log and 'GPU number: 2' in log  # mmengine's name for world size
    losses = _losses(tmp_path / 'w')
    assert len(losses) == 12
    assert sum(losses[-4:]) / 4 < 0.9 * sum(losses[:4]) / 4, losses  # it learns
    sync = json.load(open(tmp_path / 'w' / 'param_sync.json'))
    assert [r['iter'] for r in sync] == [4, 8, 12, 12]
    assert all(len(r['checksums']) == 2 and r['checksums'][0] == r['checksums'][1] for r in sync)
    # resume: continues from iteration 12 to 16, still in sync
    assert osp.isfile(tmp_path / 'w' / 'iter_12.pth')
    out = subprocess.run(['bash', str(ROOT / 'tools/dist_train.sh'), str(cfg), '2', '--work-dir', str(tmp_path / 'w'),
                          '--resume', '--cfg-options', f'train_dataloader.dataset.data_root={data}',
                          f'val_dataloader.dataset.data_root={data}', 'train_cfg.max_iters=16'],
                         capture_output=True, text=True, env=dict(os.environ, OMP_NUM_THREADS='1', PORT='29543'),
                         timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    newest = sorted(glob.glob(str(tmp_path / 'w' / '*' / '*.log')))[-1]
    assert 'resumed epoch: 0, iter: 12' in open(newest).read() or 'Load checkpoint from' in open(newest).read()
    sync = json.load(open(tmp_path / 'w' / 'param_sync.json'))
    assert sync[-1]['iter'] == 16 and sync[-1]['checksums'][0] == sync[-1]['checksums'][1]


def test_fsdp_wrap_units_are_the_blocks():
    """Fast, in-process: the wrap policy through FSDP's own recursive wrapper with a stand-in wrapper
    class: every block, and only blocks, become units (test_fsdp.py runs the real thing)."""
    from torch.distributed.fsdp.wrap import _recursive_wrap

    import perception.engine  # noqa: F401  (registers the FSDP functions)
    from mmengine.registry import FUNCTIONS
    from mmseg.registry import MODELS
    from perception.layers.block import Block
    init_default_scope('mmseg')
    policy = FUNCTIONS.get('internvit_block_wrap_policy')
    assert FUNCTIONS.get('internvit_block_checkpoint_fn')(Block(16, 2, 32))

    class Unit(torch.nn.Module):
        def __init__(self, module, **kw):
            super().__init__()
            self._fsdp_wrapped_module = module

        def forward(self, *a, **k):
            return self._fsdp_wrapped_module(*a, **k)
    cfg = Config.fromfile(str(ROOT / 'mmcfg/demo/upernet_internvit-tiny_1xb8-1k_demo-shapes-112x112.py'))
    model = MODELS.build(cfg.model)
    n_blocks = len(model.backbone.blocks)
    _recursive_wrap(model, auto_wrap_policy=policy, wrapper_cls=Unit, ignored_modules=set(), ignored_params=set(),
                    only_wrap_children=True)
    units = [m for m in model.modules() if isinstance(m, Unit)]
    assert len(units) == n_blocks and all(isinstance(u._fsdp_wrapped_module, Block) for u in units)
    # layer-wise lr decay still reads the wrapped names (use_orig_params keeps them with prefixes)
    from mmengine.optim import build_optim_wrapper
    names = [n for n, _ in model.named_parameters()]
    assert any('_fsdp_wrapped_module' in n for n in names)
    ow = build_optim_wrapper(model, dict(type='OptimWrapper', optimizer=dict(type='AdamW', lr=1.0, weight_decay=0.05),
                                         constructor='InternViTLayerDecayOptimWrapperConstructor',
                                         paramwise_cfg=dict(num_layers=n_blocks, layer_decay_rate=0.5)))
    lr_of = {id(p): g['lr'] for g in ow.optimizer.param_groups for p in g['params']}
    blk2 = dict(model.named_parameters())['backbone.blocks.2._fsdp_wrapped_module.mlp.fc1.weight']
    assert lr_of[id(blk2)] == pytest.approx(0.5 ** (n_blocks + 1 - 3))
    assert lr_of[id(model.backbone.pos_embed)] == pytest.approx(0.5 ** (n_blocks + 1))


def test_scale_configs():
    import perception  # noqa: F401
    from mmseg.registry import MODELS
    init_default_scope('mmseg')
    configs = sorted(glob.glob(str(ROOT / 'mmcfg/scale/*.py')))
    assert len(configs) == 9
    strategies = {}
    for f in configs:
        cfg = Config.fromfile(f)
        assert cfg.runner_type == 'FlexibleRunner'
        with torch.device('meta'):
            model = MODELS.build(cfg.model)
        tiny = '_internvit-tiny_' in f
        assert not model.backbone.frozen and model.backbone.num_layers == (6 if tiny else 48)
        assert cfg.optim_wrapper.constructor == 'InternViTLayerDecayOptimWrapperConstructor'
        if cfg.strategy.type == 'PortableFSDPStrategy':
            strategies[f] = cfg.strategy.to_dict()
            mw = cfg.strategy.model_wrapper
            assert mw.auto_wrap_policy.type == 'internvit_block_wrap_policy' and mw.use_orig_params
            assert mw.mixed_precision.param_dtype == 'bfloat16' and mw.mixed_precision.reduce_dtype == 'float32'
            assert cfg.strategy.activation_checkpointing.check_fn == 'internvit_block_checkpoint_fn'
            assert cfg.strategy.state_dict_cfg == 'local'  # sharded checkpoints
        else:
            assert cfg.strategy.type == 'DeepSpeedStrategy' and cfg.strategy.zero_optimization.stage in (2, 3)
    # one strategy for every size: what CI runs on the tiny model is what the 6B configs use
    tiny = [v for k, v in strategies.items() if '_internvit-tiny_' in k]
    assert len(tiny) == 1 and len(strategies) == 7 and all(v == tiny[0] for v in strategies.values())


@pytest.mark.slow
def test_memory_plan_script():
    out = subprocess.run([str(ROOT / '.venv/bin/python') if (ROOT / '.venv/bin/python').exists() else 'python',
                          str(ROOT / 'tools/memory_plan.py'), '--config',
                          str(ROOT / 'mmcfg/demo/upernet_internvit-tiny_1xb8-1k_demo-shapes-112x112.py'),
                          '--img', '112', '--gpus', '1', '2', '--gpu-mem', '1'], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    rows = [ln for ln in out.stdout.splitlines() if re.match(r'\| [12] \| FULL_SHARD', ln)]
    assert len(rows) == 2
    total = [float(re.search(r'\*\*([\d.]+)\*\*', r).group(1)) for r in rows]
    assert total[1] <= total[0]  # more GPUs, less memory each


def test_fsdp_config_without_torchrun_names_the_command(tmp_path):
    from perception.apis import train
    from perception.config import ConfigError
    cfg = str(ROOT / 'mmcfg/scale/upernet_internvit-tiny_fsdp-2xb4-100_demo-shapes-112x112.py')
    with pytest.raises(ConfigError, match=r'PortableFSDPStrategy trains under torchrun: tools/dist_train.sh .* NUM_PROCS'):
        train(cfg, work_dir=str(tmp_path))
    assert not list(tmp_path.iterdir())  # nothing written
