"""mmengine hooks: save the few-shot file list, plot the learning curve."""
import os.path as osp

from mmengine.hooks import Hook
from mmengine.logging import print_log
from ..registry import register


@register('HOOKS')
class FewShotSubsetHook(Hook):
    """Writes the training subset chosen by ``few_shot_divisor`` to ``work_dir/few_shot_subset.txt``."""

    def before_train(self, runner):
        dataset = runner.train_dataloader.dataset
        while not hasattr(dataset, 'subset_files') and hasattr(dataset, 'dataset'):
            dataset = dataset.dataset
        files = getattr(dataset, 'subset_files', None)
        if files is None:
            return
        from ..common.files import atomic_write
        out = osp.join(runner.work_dir, 'few_shot_subset.txt')
        with atomic_write(out) as tmp:
            tmp.write_text(f'# divisor {dataset.few_shot_divisor}, seed {dataset.few_shot_seed}, '
                           f'{len(files)} images\n' + '\n'.join(files) + '\n')
        print_log(f'few-shot subset: {len(files)} images (1/{dataset.few_shot_divisor}, seed '
                  f'{dataset.few_shot_seed}) listed in {out}', logger='current')


@register('HOOKS')
class LearningCurveHook(Hook):
    """After training (and after each validation) writes ``learning_curve.png`` in the log dir."""
    priority = 'VERY_LOW'

    def _plot(self, runner):
        from ..visualization import find_scalars, plot_learning_curve
        scalars = find_scalars(runner.log_dir)
        if scalars is None:
            return
        out = osp.join(runner.log_dir, 'learning_curve.png')
        try:
            plot_learning_curve(scalars, out)
        except ValueError as e:  # nothing logged yet
            print_log(f'learning curve not written: {e}', logger='current')

    def after_val_epoch(self, runner, metrics=None):
        self._plot(runner)

    def after_train(self, runner):
        self._plot(runner)
        print_log(f'learning curve: {osp.join(runner.log_dir, "learning_curve.png")}', logger='current')


@register('HOOKS')
class ParamSyncCheckHook(Hook):
    """Checks that data-parallel ranks hold identical parameters: every ``interval`` iterations (and
    after training) each rank hashes its parameters, the hashes are all-gathered, and a mismatch is an
    error naming the ranks. Writes ``param_sync.json`` (iteration, per-rank checksums) in the work dir."""
    priority = 'LOW'

    def __init__(self, interval: int = 0):
        self.interval = interval
        self.records = []

    def _check(self, runner, iteration):
        import json

        import torch
        import torch.distributed as dist
        model = getattr(runner.model, 'module', runner.model)
        with torch.no_grad():
            total = torch.zeros((), dtype=torch.float64)
            for p in model.parameters():
                total += p.detach().double().sum() + p.detach().double().abs().sum() * 1e-3
        sums = [float(total)]
        if dist.is_available() and dist.is_initialized():
            out = [None] * dist.get_world_size()
            dist.all_gather_object(out, float(total))
            sums = out
        self.records.append({'iter': iteration, 'checksums': sums})
        if runner.rank == 0:
            from ..common.files import atomic_write
            with atomic_write(osp.join(runner.work_dir, 'param_sync.json')) as tmp:
                tmp.write_text(json.dumps(self.records, indent=1))
        if len(set(sums)) != 1:
            raise RuntimeError(f'ranks diverged at iteration {iteration}: parameter checksums {sums}')

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        if self.interval and self.every_n_train_iters(runner, self.interval):
            self._check(runner, runner.iter + 1)

    def after_train(self, runner):
        self._check(runner, runner.iter)


@register('HOOKS', 'mmseg', 'mmpretrain')
class AccumulationSchedulerHook(Hook):
    """mmengine's ``ParamSchedulerHook`` that steps the iteration-based schedules once per optimizer
    update instead of once per iteration. With ``optim_wrapper.accumulative_counts = k`` a schedule
    then counts optimizer steps (warmup 1500, poly to 80000) exactly as the k-GPU recipe does, while
    ``train_cfg.max_iters`` counts forward passes (k x the steps). With k = 1 it is the stock hook."""

    priority = 'LOW'

    def __init__(self):
        from mmengine.hooks import ParamSchedulerHook
        self._stock = ParamSchedulerHook()

    @staticmethod
    def _updated(runner) -> bool:
        ow = runner.optim_wrapper
        wrappers = list(ow.values()) if hasattr(ow, 'values') else [ow]
        return all(w.should_update() for w in wrappers)

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        if self._updated(runner):  # the optimizer stepped in this iteration
            self._stock.after_train_iter(runner, batch_idx, data_batch, outputs)

    def after_train_epoch(self, runner):
        self._stock.after_train_epoch(runner)

    def after_val_epoch(self, runner, metrics=None):
        self._stock.after_val_epoch(runner, metrics)
