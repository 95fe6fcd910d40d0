"""The head grid: one BatchNorm + Linear head per (feature choice, learning rate), trained in one pass."""
from typing import Dict, List, Sequence

import torch
from torch import nn

from ...common.files import atomic_write


def feature_choices(C: int, n_blocks: int, wanted: Sequence[int]) -> Dict[str, slice]:
    out = {'cls': slice(0, C), 'cls_patch': slice(0, 2 * C)}
    for n in wanted:
        if 1 < n <= n_blocks:
            out[f'cls_patch_last{n}'] = slice(0, 2 * C * n)
    return out


class HeadGrid(nn.Module):
    """One BatchNorm(eps 1e-6) + Linear head per (feature choice, lr), all trained in one pass.

    Heads on the same feature choice share the BatchNorm statistics (they normalise the same
    features) and are evaluated as one batched matmul: per choice, affine ``gamma/beta [L, d]`` and
    classifier ``weight [L, K, d]``, ``bias [L, K]`` for the ``L`` learning rates. Per-head learning
    rates are exact: SGD (momentum, nesterov, no weight decay) is linear in the gradient, so scaling
    head ``l``'s gradient by ``lr_l`` and stepping with the shared schedule equals a param group per lr.
    """

    def __init__(self, choices: Dict[str, slice], lrs: Sequence[float], num_classes: int):
        super().__init__()
        self.choices = dict(choices)
        self.lrs = [float(x) for x in lrs]
        self.bn = nn.ModuleDict()
        self.params = nn.ParameterDict()
        L = len(self.lrs)
        for name, sl in self.choices.items():
            d = sl.stop - sl.start
            self.bn[name] = nn.BatchNorm1d(d, eps=1e-6, affine=False)
            self.params[f'{name}__gamma'] = nn.Parameter(torch.ones(L, d))
            self.params[f'{name}__beta'] = nn.Parameter(torch.zeros(L, d))
            w = torch.empty(L, num_classes, d)
            nn.init.trunc_normal_(w, std=0.01)
            self.params[f'{name}__weight'] = nn.Parameter(w)
            self.params[f'{name}__bias'] = nn.Parameter(torch.zeros(L, num_classes))

    @staticmethod
    def key(name: str, lr: float) -> str:
        return f'{name}_lr{lr:g}'

    @property
    def keys(self) -> List[str]:
        return [self.key(n, lr) for n in self.choices for lr in self.lrs]

    def forward(self, x) -> Dict[str, torch.Tensor]:
        """Logits per choice: ``[L, B, K]``."""
        out = {}
        for name, sl in self.choices.items():
            xn = self.bn[name](x[:, sl])
            g, b = self.params[f'{name}__gamma'], self.params[f'{name}__beta']
            w = self.params[f'{name}__weight']
            # (xn * g_l + b_l) W_l^T + c_l  ==  xn (g_l * W_l)^T + (b_l W_l^T + c_l): one [B, L*K] matmul
            L, K, d = w.shape
            wf = (w * g[:, None, :]).reshape(L * K, d)
            bias = torch.einsum('ld,lkd->lk', b, w) + self.params[f'{name}__bias']
            out[name] = (xn @ wf.t()).view(-1, L, K).transpose(0, 1) + bias[:, None]
        return out

    def clip_and_scale_grads(self, max_norm: float = 5.0):
        """Per-head gradient clipping (as each head alone would be clipped), then the lr scaling."""
        lr = torch.tensor(self.lrs)
        for name in self.choices:
            ps = [self.params[f'{name}__{k}'] for k in ('gamma', 'beta', 'weight', 'bias')]
            sq = sum(p.grad.flatten(1).pow(2).sum(1) for p in ps)
            factor = (max_norm / (sq.sqrt() + 1e-6)).clamp(max=1.0) * lr
            for p in ps:
                p.grad.mul_(factor.view(-1, *([1] * (p.grad.ndim - 1))))

    def head_state(self, key: str) -> Dict[str, torch.Tensor]:
        """``norm.*`` (BatchNorm1d with affine) and ``fc.*`` (Linear) of one head."""
        name, lr = key.rsplit('_lr', 1)
        i = self.lrs.index(float(lr))
        bn = self.bn[name]
        return {'norm.weight': self.params[f'{name}__gamma'][i], 'norm.bias': self.params[f'{name}__beta'][i],
                'norm.running_mean': bn.running_mean, 'norm.running_var': bn.running_var,
                'norm.num_batches_tracked': bn.num_batches_tracked,
                'fc.weight': self.params[f'{name}__weight'][i], 'fc.bias': self.params[f'{name}__bias'][i]}


def save_head(grid: HeadGrid, key: str, path: str, meta: dict):
    """A classifier checkpoint holding ``head.norm.*`` / ``head.fc.*`` (mmengine layout)."""
    sd = {f'head.{k}': v.detach().cpu().clone() for k, v in grid.head_state(key).items()}
    with atomic_write(path) as tmp:
        torch.save({'state_dict': sd, 'meta': meta}, tmp)
    return path
