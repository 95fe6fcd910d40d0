"""Test-only mmengine hook (loaded with custom_imports, tests/ on PYTHONPATH): every rank writes what
the scaling tests compare into ``work_dir/probe_rank{r}.json``: the loss of every iteration (the
rank's own), each parameter's lr / weight decay as the optimizer holds them, and its peak RSS.
``PROBE_KILL_AT=N`` makes the last rank SIGKILL itself at the start of iteration N (1-based)."""
import json
import os
import resource
import signal

from mmengine.hooks import Hook
from mmengine.registry import HOOKS


@HOOKS.register_module()
class FSDPProbeHook(Hook):
    priority = 'VERY_LOW'

    def __init__(self):
        self.losses = {}
        self.groups = {}

    def _rank(self):
        import torch.distributed as dist
        return (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)

    def before_train(self, runner):
        self.rss = {'before_train': _rss_kib(), 'peak_before_train': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}
        from perception.engine.layer_decay import clean_param_name
        names = {id(p): clean_param_name(n) for n, p in runner.model.named_parameters()}
        for g in runner.optim_wrapper.optimizer.param_groups:
            for p in g['params']:
                self.groups[names[id(p)]] = [g['initial_lr'] if 'initial_lr' in g else g['lr'], g['weight_decay']]

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        rank, world = self._rank()
        if os.environ.get('PROBE_KILL_AT') == str(runner.iter + 1) and rank == world - 1:
            os.kill(os.getpid(), signal.SIGKILL)

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        self.losses[runner.iter] = float(outputs['loss'])
        self.rss[f'iter{runner.iter}'] = _rss_kib()

    def after_train(self, runner):
        rank, world = self._rank()
        out = dict(rank=rank, world=world, losses=self.losses, groups=self.groups,
                   peak_rss_kib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, rss_at_import_kib=RSS_AT_IMPORT_KIB, rss=self.rss)
        path = os.path.join(runner.work_dir, f'probe_rank{rank}.json')
        with open(path + '.tmp', 'w') as f:
            json.dump(out, f)
        os.replace(path + '.tmp', path)


def _rss_kib():
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith('VmRSS:'):
                return int(line.split()[1])
    return 0


# RSS when the config's custom_imports load this module: before datasets and the model are built
RSS_AT_IMPORT_KIB = _rss_kib()
