"""Nothing lost: checkpoints under kill -9, resume from the newest complete one, no overwriting."""
import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from perception.datasets.demo_data import make_demo_dataset

ROOT = Path(__file__).resolve().parents[1]
DEMO_LINEAR = str(ROOT / 'mmcfg/demo/linear_internvit-tiny_1xb8-1k_demo-shapes-112x112.py')
# a real SIGKILL of the training process in the middle of writing a given checkpoint (half the bytes on disk)
KILL_DURING_SAVE = '''
import os, runpy, signal, sys
from mmengine.fileio.backends.local_backend import LocalBackend
put, target = LocalBackend.put, os.environ['KILL_AT']
def put_then_die(self, obj, filepath):
    if os.path.basename(str(filepath)).startswith(target):
        with open(filepath, 'wb') as f:
            f.write(obj[:len(obj) // 2])
            f.flush()
            os.fsync(f.fileno())
        os.kill(os.getpid(), signal.SIGKILL)
    return put(self, obj, filepath)
LocalBackend.put = put_then_die
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name='__main__')
'''


@pytest.fixture(scope='module')
def data(tmp_path_factory):
    return str(make_demo_dataset(tmp_path_factory.mktemp('d') / 'shapes', seed=4, num_train=4, num_val=2))


def _train(data, wd, iters, *extra, kill_at=None, keep=1):
    opts = [f'train_cfg.max_iters={iters}', 'train_cfg.val_interval=1000', 'default_hooks.checkpoint.interval=1',
            f'default_hooks.checkpoint.max_keep_ckpts={keep}', 'train_dataloader.batch_size=2',
            'default_hooks.logger.interval=1']
    for split in ('train', 'val', 'test'):
        opts += [f'{split}_dataloader.dataset.data_root={data}', f'{split}_dataloader.num_workers=0',
                 f'{split}_dataloader.persistent_workers=False']
    cmd = [str(ROOT / 'tools/train.py'), DEMO_LINEAR, '--work-dir', str(wd), '--fp32', *extra, '--cfg-options', *opts]
    env = dict(os.environ)
    if kill_at:
        cmd = ['-c', KILL_DURING_SAVE, *cmd]
        env['KILL_AT'] = kill_at
    return subprocess.run([sys.executable, *cmd], capture_output=True, text=True, timeout=600, env=env, cwd=ROOT)


def _sha(p):
    return hashlib.sha256(Path(p).read_bytes()).hexdigest()


def test_kill_during_a_save_keeps_the_newest_good_checkpoint_and_resume_uses_it(data, tmp_path):
    wd = tmp_path / 'w'
    r = _train(data, wd, 3, kill_at='.iter_2.pth', keep=1)  # max_keep_ckpts=1: mmengine deleted iter_1 first
    assert r.returncode == -9, r.stderr[-2000:]
    kept = sorted(f for f in os.listdir(wd) if 'iter_' in f or f == 'last_checkpoint')
    assert kept == ['.iter_2.pth.tmp', 'iter_1.pth', 'last_checkpoint'], kept
    assert open(wd / 'last_checkpoint').read().strip().endswith('iter_1.pth')
    r = _train(data, wd, 3, '--resume')
    assert r.returncode == 0, r.stderr[-3000:]
    log = r.stdout + r.stderr
    assert 'resuming from' in log and 'iter_1.pth' in log and 'interrupted checkpoint save' in log
    assert 'resumed epoch: 0, iter: 1' in log
    ckpts = sorted(f for f in os.listdir(wd) if f.endswith('.pth') or f.endswith('.tmp'))
    assert ckpts == ['iter_3.pth'], ckpts  # the temp file is gone, the old one pruned after the new one


def test_resume_without_last_checkpoint_picks_the_newest_complete_one(data, tmp_path):
    wd = tmp_path / 'w'
    assert _train(data, wd, 2, keep=3).returncode == 0
    os.remove(wd / 'last_checkpoint')  # mmengine: "Auto resumed from the latest checkpoint None", from scratch
    (wd / 'iter_3.pth').write_bytes((wd / 'iter_2.pth').read_bytes()[:5000])  # a truncated newer one
    r = _train(data, wd, 4, '--resume', keep=3)
    log = r.stdout + r.stderr
    assert r.returncode == 0, log[-3000:]
    assert 'iter_3.pth is incomplete' in log and 'resumed epoch: 0, iter: 2' in log


def test_training_into_a_work_dir_with_checkpoints_is_refused(data, tmp_path):
    wd = tmp_path / 'w'
    assert _train(data, wd, 1).returncode == 0
    before = {f: _sha(wd / f) for f in os.listdir(wd) if f.endswith('.pth')}
    r = _train(data, wd, 1)
    assert r.returncode == 2 and r.stderr.strip().splitlines()[-1].startswith(
        f'error: work dir {wd} already holds checkpoints (iter_1.pth): --resume continues'), r.stderr[-2000:]
    assert {f: _sha(wd / f) for f in os.listdir(wd) if f.endswith('.pth')} == before
    (wd / 'iter_1.pth').write_bytes(b'PK\x03\x04 not a whole zip')
    os.remove(wd / 'last_checkpoint')
    r = _train(data, wd, 2, '--resume')
    assert r.returncode == 2 and 'no complete checkpoint' in r.stderr.strip().splitlines()[-1], r.stderr[-2000:]
