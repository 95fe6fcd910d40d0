"""What the tools write never replaces or re-reads what they did not write, and one training run
holds a work dir at a time (docs/reliability.md, "Cases checked").

- ``tools/infer.py --out``: a user's ``cat_label.png`` beside ``cat.jpg`` is refused untouched; an
  ``--out`` inside the input folder, or the input folder itself, gives the same files on every run.
- ``tools/test.py --out``: a folder holding files of the predictions' names (the annotation folder)
  is refused untouched, before the model is loaded; its own outputs are replaced, the same files.
- ``tools/train.py``: a second run into a work dir is refused naming the first; a lock left by a run
  that was killed (a real ``kill -9``) is replaced, the log naming it.
"""
import hashlib
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import run_tool

ROOT = Path(__file__).resolve().parents[1]
DEMO_UPERNET = str(ROOT / 'mmcfg/demo/upernet_internvit-tiny_1xb8-1k_demo-shapes-112x112.py')
DEMO_LINEAR = str(ROOT / 'mmcfg/demo/linear_internvit-tiny_1xb8-1k_demo-shapes-112x112.py')
OUTPUT_RECORD = '.perception-outputs.json'  # what the tools wrote into a folder
OUTPUT_LOCK = '.perception-outputs.lock'  # held by the one run writing into a folder
TRAIN_LOCK = '.perception-train.lock'  # held by the one training run in a work dir


@pytest.fixture(scope='module')
def data(tmp_path_factory):
    from perception.datasets.demo_data import make_demo_dataset
    return make_demo_dataset(tmp_path_factory.mktemp('outputs') / 'shapes', seed=3, num_train=4, num_val=2)


def _photos(data, folder: Path) -> Path:
    """A user's folder: cat.jpg and dog.jpg (two demo images)."""
    folder.mkdir(parents=True, exist_ok=True)
    src = sorted((data / 'images' / 'validation').glob('*.jpg'))
    shutil.copy(src[0], folder / 'cat.jpg')
    shutil.copy(src[1], folder / 'dog.jpg')
    return folder


def _tree(folder: Path):
    """{relative path: sha256} of every file under folder."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob('*')) if p.is_file()}


def _opts(data, *extra):
    opts = []
    for split in ('train', 'val', 'test'):
        opts += [f'{split}_dataloader.dataset.data_root={data}', f'{split}_dataloader.num_workers=0',
                 f'{split}_dataloader.persistent_workers=False']
    return ['--cfg-options', *opts, *extra]


class _Echo:
    def segment(self, img, alpha=0.5, side_by_side=False):
        return np.zeros(img.shape[:2], np.uint8), img


# ---- tools/infer.py ----

@pytest.mark.slow
@pytest.mark.parametrize('where', ['pred', '.'])
def test_infer_into_its_input_folder_gives_the_same_files_every_run(data, tmp_path, capsys, where):
    """``--out DIR/pred`` (and ``--out DIR``): the first run writes 2 label maps + 2 overlays; the second
    and third neither segment those outputs (2 -> 5 -> 11 files before) nor change a byte."""
    import torch
    photos = _photos(data, tmp_path / 'photos')
    out = photos / where
    trees = []
    for _ in range(3):
        torch.manual_seed(0)  # --random-init: the same weights each run
        status, err = run_tool(capsys, 'infer', DEMO_UPERNET, '--random-init', photos, '--out', out)
        assert status == 0, err[-2000:]
        trees.append(_tree(photos))
    pre = '' if where == '.' else f'{where}/'
    assert sorted(trees[0]) == sorted(['cat.jpg', 'dog.jpg', pre + OUTPUT_RECORD] +
                                      [pre + n for n in ('cat_label.png', 'cat_overlay.jpg', 'dog_label.png',
                                                         'dog_overlay.jpg')])
    assert trees[0] == trees[1] == trees[2]  # same names, same bytes: no growth


def test_a_users_label_beside_the_image_is_refused_untouched(data, tmp_path, capsys):
    """``cat_label.png`` (the user's own, hand-drawn) beside ``cat.jpg``, ``--out`` the same folder: one
    line naming it, before the model is loaded; no file written (it was overwritten without a word)."""
    photos = _photos(data, tmp_path / 'photos')
    (photos / 'cat_label.png').write_bytes(b'\x89PNG my own annotation')
    before = _tree(photos)
    for backend in ([DEMO_UPERNET, '--random-init'], ['--backend', 'onnx', tmp_path / 'no-bundle-needed']):
        status, err = run_tool(capsys, 'infer', *backend, photos, '--out', photos)
        lines = err.strip().splitlines()
        assert status == 2 and len(lines) == 1, err[-2000:]
        assert lines[0] == (f'error: --out {photos} holds cat_label.png, which this project did not write (not in '
                            f'{OUTPUT_RECORD}, or changed since): writing would replace it; move it away or choose '
                            'another --out')
        assert _tree(photos) == before


def test_the_loop_says_what_it_wrote_and_replaces_only_its_own(tmp_path):
    """The shared loop (both backends): the summary line; a rerun replaces its own files and says so;
    an output changed since it was written is not ours any more; a killed run's names stay ours."""
    import cv2

    from perception.common.files import OutputRecord
    from perception.deploy.io import segment_images
    photos = tmp_path / 'photos'
    photos.mkdir()
    for name in ('cat', 'dog'):
        cv2.imwrite(str(photos / f'{name}.jpg'), np.full((16, 16, 3), 40, np.uint8))
    msgs = []
    log = lambda m, lvl: msgs.append(m)  # noqa: E731
    segment_images(_Echo(), str(photos), str(photos), log=log)
    assert msgs[-1] == (f'segmented 2 of 2 images: wrote 4 files into {photos} (2 label maps, 2 overlays; 0 of them '
                        f'replaced what an earlier run wrote; listed in {OUTPUT_RECORD})')
    segment_images(_Echo(), str(photos), str(photos), log=log)
    assert any(m.startswith('left out 4 file(s) that an earlier run wrote') for m in msgs)
    assert '4 of them replaced what an earlier run wrote' in msgs[-1]
    # the user edits an output: it is theirs now, an input, and not replaced
    (photos / 'dog_overlay.jpg').write_bytes((photos / 'cat_overlay.jpg').read_bytes() + b'\0')
    with pytest.raises(FileExistsError, match=r'holds dog_overlay\.jpg, which this project did not write'):
        segment_images(_Echo(), str(photos / 'dog.jpg'), str(photos), log=log)
    # a run killed after marking its names: those files are still ours (a rerun is not refused)
    rec = OutputRecord(photos)
    rec.expect(['dog_overlay.jpg'], 'test')
    segment_images(_Echo(), str(photos / 'dog.jpg'), str(photos), log=log)
    assert json.loads((photos / OUTPUT_RECORD).read_text())['files']['dog_overlay.jpg']['size'] > 0


def test_a_second_run_into_one_out_folder_is_refused(tmp_path):
    import cv2

    from perception.deploy.io import segment_images
    cv2.imwrite(str(tmp_path / 'a.jpg'), np.zeros((8, 8, 3), np.uint8))
    (tmp_path / 'out').mkdir()
    holder = subprocess.Popen([sys.executable, '-c', _HOLD, str(tmp_path / 'out' / OUTPUT_LOCK)],
                              stdout=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        assert holder.stdout.readline().strip() == 'held'
        with pytest.raises(OSError, match=rf'--out {tmp_path / "out"} is being written by another run \(pid '
                                          rf'{holder.pid} on .*: wait for it to end or choose another --out'):
            segment_images(_Echo(), str(tmp_path / 'a.jpg'), str(tmp_path / 'out'))
    finally:
        holder.kill()
        holder.wait()
    assert os.listdir(tmp_path / 'out') == [OUTPUT_LOCK]  # nothing written
    segment_images(_Echo(), str(tmp_path / 'a.jpg'), str(tmp_path / 'out'), log=lambda m, lvl: None)
    assert sorted(os.listdir(tmp_path / 'out')) == [OUTPUT_RECORD, 'a_label.png', 'a_overlay.jpg']  # lock gone


# a process holding a lock as the tools take it: flock on the file, which says who holds it (JSON)
_HOLD = '''
import fcntl, json, os, socket, sys, time
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)
fcntl.flock(fd, fcntl.LOCK_EX)
os.write(fd, json.dumps(dict(pid=os.getpid(), host=socket.gethostname(), started=time.strftime('%Y-%m-%d %H:%M:%S'),
                             command=' '.join(['python', '-c', 'HOLD', *sys.argv[1:]]))).encode())
print('held', flush=True)
time.sleep(120)
'''


# ---- tools/test.py ----

@pytest.mark.slow
def test_test_py_out_at_the_annotations_is_refused_untouched_and_reruns_are_idempotent(data, tmp_path):
    """``--out`` at the validation annotations (the names mmseg writes, ``<image>.png``): one line naming
    them before the model is loaded, the ground truth untouched (it was overwritten). Into a fresh
    folder: the predictions and the record; rerun: the same files, replaced."""
    ann = data / 'annotations' / 'validation'
    before = _tree(ann)
    r = subprocess.run([sys.executable, str(ROOT / 'tools/test.py'), DEMO_LINEAR, '--random-init', '--out', str(ann),
                        '--work-dir', str(tmp_path / 'w'), *_opts(data)], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert r.returncode == 2, r.stderr[-2000:]
    names = sorted(before)
    assert r.stderr.strip().splitlines()[-1] == (
        f'error: --out {ann} holds {", ".join(names)}, which this project did not write (not in {OUTPUT_RECORD}, '
        'or changed since): writing would replace them; move them away or choose another --out')
    assert 'Traceback' not in r.stderr and _tree(ann) == before

    from perception.apis import evaluate
    opts = {'randomness.seed': 0}  # --random-init: the same weights each run
    for split in ('train', 'val', 'test'):
        opts.update({f'{split}_dataloader.dataset.data_root': str(data), f'{split}_dataloader.num_workers': 0,
                     f'{split}_dataloader.persistent_workers': False})
    out = tmp_path / 'pred'
    trees = []
    for _ in range(2):
        evaluate(DEMO_LINEAR, None, work_dir=str(tmp_path / 'w'), cfg_options=opts, out=str(out), random_init=True)
        trees.append(_tree(out))
    assert sorted(trees[0]) == sorted([OUTPUT_RECORD] + names) and trees[0] == trees[1]
    assert not (out / OUTPUT_LOCK).exists()


# ---- tools/train.py: one run per work dir ----

def test_a_second_training_run_is_refused_naming_the_first(data, tmp_path, capsys):
    """A run holds the work dir (the lock taken as ``lock_work_dir`` takes it, in another process): a second
    ``tools/train.py`` into it is refused in one line naming the first, before the checkpoint check
    (both passed it, the second overwrote and pruned the first's checkpoints)."""
    wd = tmp_path / 'w'
    wd.mkdir()
    holder = subprocess.Popen([sys.executable, '-c', _HOLD, str(wd / TRAIN_LOCK)],
                              stdout=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        assert holder.stdout.readline().strip() == 'held'
        status, err = run_tool(capsys, 'train', DEMO_LINEAR, '--work-dir', wd, '--random-init',
                               *_opts(data, 'train_cfg.max_iters=1'))
    finally:
        holder.kill()
        holder.wait()
    lines = err.strip().splitlines()
    assert status == 2 and len(lines) == 1, err[-2000:]
    assert lines[0].startswith(f'error: work dir {wd} is in use by another training run (pid {holder.pid} on ')
    assert str(wd / TRAIN_LOCK) in lines[0]  # the first run's command line
    assert lines[0].endswith('): wait for it to end, or use another --work-dir')
    assert os.listdir(wd) == [TRAIN_LOCK]  # nothing written


def test_a_stale_lock_is_replaced_with_a_warning(tmp_path, monkeypatch):
    """The lock file of a run that was killed (no process holds it) is taken over, the log naming the run."""
    import perception.engine.checkpoints as ckpts
    stale = {'pid': 999999, 'host': 'node7', 'started': '2025-01-02 03:04:05 +0000', 'command': 'python train.py x'}
    (tmp_path / TRAIN_LOCK).write_text(json.dumps(stale))
    said = []
    monkeypatch.setattr(ckpts, 'print_log', lambda msg, logger=None, level=logging.INFO: said.append((level, msg)))
    lock = ckpts.lock_work_dir(str(tmp_path))
    try:
        assert said == [(logging.WARNING, f'work dir {tmp_path}: replaced a stale lock, left by a run that ended '
                                          'without releasing it (killed?): pid 999999 on node7, started 2025-01-02 '
                                          '03:04:05 +0000: python train.py x')]
        assert json.loads((tmp_path / TRAIN_LOCK).read_text())['pid'] == os.getpid()
        with pytest.raises(ckpts.WorkDirError, match=rf'pid {os.getpid()} on '):
            ckpts.lock_work_dir(str(tmp_path))  # held: refused, even to another open in this process
    finally:
        lock.release()
    assert not (tmp_path / TRAIN_LOCK).exists()


@pytest.mark.slow
def test_two_real_runs_then_a_kill(data, tmp_path):
    """``tools/train.py`` is training; a second one into its work dir is refused naming it; the first is
    killed (``kill -9``): the next run replaces its lock, says so, and trains."""
    wd = tmp_path / 'w'
    cmd = [sys.executable, str(ROOT / 'tools/train.py'), DEMO_LINEAR, '--work-dir', str(wd), '--random-init',
           *_opts(data, 'train_cfg.max_iters=100000', 'train_cfg.val_interval=100000',
                  'default_hooks.checkpoint.interval=100000', 'train_dataloader.batch_size=2')]
    env = dict(os.environ, OMP_NUM_THREADS='1')
    first = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, cwd=ROOT)
    try:
        lock = wd / TRAIN_LOCK
        deadline = time.time() + 120
        while not (lock.is_file() and lock.stat().st_size) and time.time() < deadline and first.poll() is None:
            time.sleep(0.2)
        assert first.poll() is None and lock.is_file(), 'the first run did not start'
        second = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120, cwd=ROOT)
        assert second.returncode == 2, second.stderr[-2000:]
        last = second.stderr.strip().splitlines()[-1]
        assert last.startswith(f'error: work dir {wd} is in use by another training run (pid {first.pid} on ')
        assert 'tools/train.py' in last and 'Traceback' not in second.stderr
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    assert json.loads(lock.read_text())['pid'] == first.pid  # what a killed run leaves
    cmd[cmd.index('train_cfg.max_iters=100000')] = 'train_cfg.max_iters=1'
    third = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300, cwd=ROOT)
    assert third.returncode == 0, third.stderr[-2000:]
    assert f'replaced a stale lock, left by a run that ended without releasing it (killed?): pid {first.pid}' in \
        third.stdout + third.stderr
    assert (wd / 'iter_1.pth').is_file() and not lock.exists()


def test_test_py_refuses_two_images_of_one_name_and_out_for_classifiers(tmp_path):
    """mmseg names a prediction after its image file: ``a/x.jpg`` and ``b/x.jpg`` would write one
    ``x.png`` (the second replaced the first without a word); a classification config has no label
    maps to write (``--out`` was ignored)."""
    from types import SimpleNamespace

    from perception.apis import EvalOutputs, evaluate
    from perception.config import ConfigError
    paths = [str(tmp_path / 'a' / 'x.jpg'), str(tmp_path / 'b' / 'x.jpg'), str(tmp_path / 'y.jpg')]
    runner = SimpleNamespace(test_loop=SimpleNamespace(dataloader=SimpleNamespace(dataset=_Listed(paths))))
    with pytest.raises(ValueError, match=r'a/x\.jpg, .*b/x\.jpg would all write x\.png in --out .*pred \(1 such'):
        EvalOutputs(runner, str(tmp_path / 'pred'), 0)
    assert not (tmp_path / 'pred').exists()
    cls = str(ROOT / 'mmcfg/classification/internvit-tiny_linear-probe_1xb64-10e_demo-shapes-cls-112px.py')
    with pytest.raises(ConfigError, match='--out is for segmentation configs'):
        evaluate(cls, None, work_dir=str(tmp_path / 'w'), out=str(tmp_path / 'pred'), random_init=True)


class _Listed(list):
    """A dataset's file list as the test loop's dataset gives it."""

    def get_data_info(self, i):
        return {'img_path': self[i]}
