"""mmengine hooks: save the few-shot file list, plot the learning curve."""
import os.path as osp

from mmengine.hooks import Hook
from mmengine.logging import print_log


class FewShotSubsetHook(Hook):
    """Writes the training subset chosen by ``few_shot_divisor`` to ``work_dir/few_shot_subset.txt``."""

    def before_train(self, runner):
        dataset = runner.train_dataloader.dataset
        while not hasattr(dataset, 'subset_files') and hasattr(dataset, 'dataset'):
            dataset = dataset.dataset
        files = getattr(dataset, 'subset_files', None)
        if files is None:
            return
        from ..checkpoint.io import atomic_write
        out = osp.join(runner.work_dir, 'few_shot_subset.txt')
        with atomic_write(out) as tmp:
            tmp.write_text(f'# divisor {dataset.few_shot_divisor}, seed {dataset.few_shot_seed}, '
                           f'{len(files)} images\n' + '\n'.join(files) + '\n')
        print_log(f'few-shot subset: {len(files)} images (1/{dataset.few_shot_divisor}, seed '
                  f'{dataset.few_shot_seed}) listed in {out}', logger='current')


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


def register():
    from mmengine.registry import HOOKS as ENGINE
    regs = [ENGINE]
    try:
        from mmseg.registry import HOOKS as SEG
        regs.append(SEG)
    except ImportError:
        pass
    for reg in regs:
        for cls in (FewShotSubsetHook, LearningCurveHook):
            if cls.__name__ not in reg.module_dict:
                reg.register_module(module=cls)
