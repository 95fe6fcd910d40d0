"""Plain DeepSpeed ZeRO-{2,3} on CPU/gloo, 2 procs. Usage:
torchrun --nproc_per_node 2 plain_ds.py STAGE"""
import os, sys, time, torch, torch.nn as nn, deepspeed
stage = int(sys.argv[1]) if len(sys.argv) > 1 else 2
use_ds_opt = os.environ.get('DS_OPT', '0') == '1'
deepspeed.init_distributed(dist_backend='gloo')
torch.manual_seed(0)
model = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 4))
cfg = dict(train_micro_batch_size_per_gpu=4, gradient_accumulation_steps=1,
           zero_optimization=dict(stage=stage), bf16=dict(enabled=False),
           fp16=dict(enabled=False), steps_per_print=1000)
if use_ds_opt:
    cfg['optimizer'] = dict(type='AdamW', params=dict(lr=1e-3))
    opt = None
else:
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
engine, optim, _, _ = deepspeed.initialize(model=model, optimizer=opt,
    model_parameters=model.parameters(), config=cfg)
rank = torch.distributed.get_rank()
for step in range(3):
    t = time.time()
    x = torch.randn(4, 16, device=engine.device); y = torch.randn(4, 4, device=engine.device)
    loss = nn.functional.mse_loss(engine(x), y)
    engine.backward(loss); engine.step()
    print(f'rank{rank} stage{stage} step{step} loss={loss.item():.4f} '
          f'{time.time()-t:.3f}s optim={type(engine.optimizer).__name__}', flush=True)
