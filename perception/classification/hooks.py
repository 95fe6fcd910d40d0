"""EMA of the trainable part of a model (the probe head), not of the frozen 6B backbone.

mmengine's EMAHook deep-copies the whole model: 23.6 GB more for a frozen InternViT-6B in fp32.
This hook keeps an exponential moving average of the trainable parameters and of the buffers of
the modules that own them (BatchNorm statistics), evaluates with it, and saves it as the model's
``state_dict`` (the raw weights go to ``checkpoint['raw_trainable']`` so resume continues exactly).
"""
from typing import Dict

import torch
from mmengine.hooks import Hook
from ..registry import register


@register('HOOKS')
class HeadEMAHook(Hook):
    priority = 'NORMAL'

    def __init__(self, momentum: float = 0.002, begin_iter: int = 0):
        if not 0 < momentum < 1:
            raise ValueError(f'momentum must be in (0, 1), got {momentum} (decay = 1 - momentum)')
        self.momentum = momentum
        self.begin_iter = begin_iter
        self.ema: Dict[str, torch.Tensor] = {}

    @staticmethod
    def _tracked(model) -> Dict[str, torch.Tensor]:
        model = getattr(model, 'module', model)
        out = {n: p for n, p in model.named_parameters() if p.requires_grad}
        owners = {n.rsplit('.', 1)[0] for n in out}
        for n, b in model.named_buffers():
            if n.rsplit('.', 1)[0] in owners and b.dtype.is_floating_point:
                out[n] = b
        return out

    def before_train(self, runner):
        if not self.ema:
            self.ema = {n: t.detach().clone() for n, t in self._tracked(runner.model).items()}

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        if runner.iter < self.begin_iter:
            for n, t in self._tracked(runner.model).items():
                self.ema[n].copy_(t.detach())
            return
        with torch.no_grad():
            for n, t in self._tracked(runner.model).items():
                self.ema[n].mul_(1 - self.momentum).add_(t.detach(), alpha=self.momentum)

    def _swap(self, runner):
        if not self.ema:
            return
        with torch.no_grad():
            for n, t in self._tracked(runner.model).items():
                tmp = t.detach().clone()
                t.copy_(self.ema[n])
                self.ema[n].copy_(tmp)

    before_val_epoch = _swap
    after_val_epoch = lambda self, runner, metrics=None: self._swap(runner)  # noqa: E731

    def before_save_checkpoint(self, runner, checkpoint):
        if not self.ema:
            return
        sd = checkpoint['state_dict']
        raw = {}
        for n, v in self.ema.items():
            key = n if n in sd else f'module.{n}'
            if key in sd:
                raw[key] = sd[key].clone()
                sd[key] = v.detach().clone()
        checkpoint['raw_trainable'] = raw

    def after_load_checkpoint(self, runner, checkpoint):
        raw = checkpoint.get('raw_trainable')
        if not raw:
            return
        tracked = self._tracked(runner.model)
        with torch.no_grad():
            self.ema = {}
            for key, v in raw.items():
                n = key[len('module.'):] if key.startswith('module.') and key not in tracked else key
                if n in tracked:
                    self.ema[n] = tracked[n].detach().clone()  # the loaded state_dict holds the EMA
                    tracked[n].copy_(v)
