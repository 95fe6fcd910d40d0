"""Checkpoints that are never lost: atomic saves, pruning after the new one is complete, and resume
from the newest complete checkpoint.

mmengine's ``CheckpointHook`` deletes the oldest kept checkpoint *before* writing the new one and
writes in place, so a kill during a save with ``max_keep_ckpts=1`` leaves no checkpoint at all; and
``--resume`` without a ``last_checkpoint`` file silently starts from scratch (then overwrites the
existing ``iter_N.pth``). ``SafeCheckpointHook`` writes ``.NAME.tmp`` next to the final name,
fsyncs and renames it into place, updates ``last_checkpoint`` atomically, and only then prunes;
temporary files a killed run left are removed at the next start. ``resume_checkpoint`` picks what
to resume from, and says why. ``lock_work_dir``: one training run per work dir at a time.
"""
import os
import os.path as osp
import re
import shutil
import zipfile
from typing import List, Optional, Tuple

from mmengine.dist import is_main_process
from mmengine.hooks import CheckpointHook
from mmengine.logging import print_log

from ..common.errors import InputError
from ..common.files import FileLock, describe_holder, take_lock, write_bytes_atomic
from ..registry import register

class WorkDirError(InputError, RuntimeError):
    """The work dir cannot be trained into as asked (checkpoints would be overwritten, or none of them
    is complete); the message names the folder and the way out."""


_CKPT = re.compile(r'^(iter|epoch)_(\d+)\.pth$')
_TMP = re.compile(r'^\.(iter|epoch)_\d+\.pth\.tmp$')


def _fsync(path: str):
    if osp.isdir(path):
        for root, _, files in os.walk(path):
            for f in files:
                with open(osp.join(root, f), 'rb') as fh:
                    os.fsync(fh.fileno())
    else:
        with open(path, 'rb') as fh:
            os.fsync(fh.fileno())


def is_complete(path: str) -> bool:
    """A torch checkpoint file whose zip directory reads (a truncated write does not), or a sharded
    folder whose every ``rank*.pth`` does."""
    try:
        if osp.isdir(path):
            ranks = [f for f in os.listdir(path) if f.startswith('rank') and f.endswith('.pth')]
            return bool(ranks) and all(is_complete(osp.join(path, f)) for f in ranks)
        with zipfile.ZipFile(path) as z:
            return bool(z.namelist())
    except (OSError, zipfile.BadZipFile):
        return False


def checkpoints_in(work_dir: str) -> List[Tuple[int, str]]:
    """``[(step, path)]`` of the ``iter_N.pth`` / ``epoch_N.pth`` in ``work_dir``, newest first."""
    if not osp.isdir(work_dir):
        return []
    found = [(int(m.group(2)), osp.join(work_dir, f)) for f in os.listdir(work_dir) if (m := _CKPT.match(f))]
    return sorted(found, reverse=True)


def resume_checkpoint(work_dir: str) -> Optional[str]:
    """The checkpoint ``--resume`` continues from: the newest complete ``iter_N.pth`` / ``epoch_N.pth``
    in ``work_dir`` (``last_checkpoint`` is only a hint; a file it names that is missing or incomplete
    is reported and passed over). None when there is none at all; ``RuntimeError`` when checkpoints
    exist but none is complete."""
    hint = None
    last = osp.join(work_dir, 'last_checkpoint')
    if osp.isfile(last):
        hint = open(last).read().strip() or None
    found = checkpoints_in(work_dir)
    for _, path in found:
        if is_complete(path):
            if hint and osp.abspath(hint) != osp.abspath(path):
                why = 'is missing' if not osp.exists(hint) else ('is incomplete' if not is_complete(hint)
                                                                 else 'is older')
                print_log(f'last_checkpoint names {hint}, which {why}: resuming from {path}, the newest '
                          'complete checkpoint', logger='current', level=30)
            else:
                print_log(f'resuming from {path} (the newest complete checkpoint in {work_dir})', logger='current')
            return path
        print_log(f'{path} is incomplete (a write that was interrupted): passed over', logger='current', level=30)
    if found:
        raise WorkDirError(f'--resume: no complete checkpoint in {work_dir} (found '
                           f'{", ".join(osp.basename(p) for _, p in found)}, all incomplete)')
    return None


@register('HOOKS')
class SafeCheckpointHook(CheckpointHook):
    """mmengine's ``CheckpointHook`` (same arguments) that never leaves the work dir without its newest
    good checkpoint: see the module docstring."""

    def before_train(self, runner):
        super().before_train(runner)
        if is_main_process() and osp.isdir(self.out_dir):
            for f in os.listdir(self.out_dir):
                if _TMP.match(f):  # left by a save that was killed: ours, never complete
                    p = osp.join(self.out_dir, f)
                    shutil.rmtree(p) if osp.isdir(p) else os.remove(p)
                    print_log(f'removed {p}, left by an interrupted checkpoint save', logger='current')

    def _save_checkpoint_with_step(self, runner, step, meta):
        stale = None
        if self.max_keep_ckpts > 0 and not (self.keep_ckpt_ids and self.keep_ckpt_ids[-1] == step):
            if len(self.keep_ckpt_ids) == self.max_keep_ckpts:
                stale = self.keep_ckpt_ids.popleft()  # removed once the new one is in place
            self.keep_ckpt_ids.append(step)
            runner.message_hub.update_info('keep_ckpt_ids', list(self.keep_ckpt_ids))
        name = self.filename_tmpl.format(step)
        self.last_ckpt = self.file_backend.join_path(self.out_dir, name)
        runner.message_hub.update_info('last_ckpt', self.last_ckpt)
        tmp_name = f'.{name}.tmp'  # one name on every rank (a sharded save is a folder)
        runner.save_checkpoint(self.out_dir, tmp_name, self.file_client_args, save_optimizer=self.save_optimizer,
                               save_param_scheduler=self.save_param_scheduler, meta=meta, by_epoch=self.by_epoch,
                               backend_args=self.backend_args, **self.args)
        _barrier()  # sharded saves: every rank has written its file
        if is_main_process():
            tmp, final = osp.join(self.out_dir, tmp_name), osp.join(self.out_dir, name)
            _fsync(tmp)
            if osp.isdir(tmp) and osp.isdir(final):
                shutil.rmtree(final)  # an older save of the same step
            os.replace(tmp, final)
            write_bytes_atomic(osp.join(runner.work_dir, 'last_checkpoint'), self.last_ckpt.encode())
            if stale is not None and stale != step:
                old = osp.join(self.out_dir, self.filename_tmpl.format(stale))
                if osp.isdir(old):
                    shutil.rmtree(old)
                elif osp.isfile(old):
                    os.remove(old)
        _barrier()


def _barrier():
    import torch.distributed as dist
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


WORK_DIR_LOCK = '.perception-train.lock'


def lock_work_dir(work_dir: str) -> FileLock:
    """One training run per work dir: an exclusive ``flock`` on ``WORK_DIR/.perception-train.lock``,
    held until ``release()`` or the process ends (the OS frees it when the process dies). The file
    says who holds it (pid, host, start time, command): a second run is refused naming the first
    (``WorkDirError``); a file no process holds (a run that was killed) is replaced, with a warning
    naming that run. Distributed runs: global rank 0 takes it for all ranks (``perception.apis.train``)."""
    os.makedirs(work_dir, exist_ok=True)
    return take_lock(
        osp.join(work_dir, WORK_DIR_LOCK),
        lambda e: WorkDirError(f'work dir {work_dir} is in use by another training run '
                               f'({describe_holder(e.holder)}): wait for it to end, or use another --work-dir'),
        lambda msg, level: print_log(msg, logger='current', level=level), f'a second training run into {work_dir}',
        lambda who: f'work dir {work_dir}: replaced a stale lock, left by a run that ended without releasing it '
                    f'(killed?): {who}')
