"""Bad input to every tool is one line naming the file, key or value (docs/reliability.md, cases 39-);
classification data that would train wrong is refused; conversions that change an image are announced."""
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import run_tool

ROOT = Path(__file__).resolve().parents[1]
DEMO_UPERNET = str(ROOT / 'mmcfg/demo/upernet_internvit-tiny_1xb8-1k_demo-shapes-112x112.py')
DEMO_CLS = str(ROOT / 'mmcfg/classification/internvit-tiny_linear-probe_1xb64-10e_demo-shapes-cls-112px.py')


def _run(capsys, name, *argv):
    """The tool's ``main`` as its ``__main__`` runs it; returns (status, last stderr line, all stderr)."""
    status, err = run_tool(capsys, name, *argv)
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    return status, (lines[-1] if lines else ''), err


def _bad_json(t):
    p = t / 'scalars.json'
    p.write_text('{"loss": 1.0, "step": 1}\n{bad\n')
    return [p, '--out', t / 'c.png'], f'{p}: line 2 is not JSON'


def _existing_out(t):
    (t / 'vis_data').mkdir()
    (t / 'vis_data' / 'scalars.json').write_text('{"loss": 1.0, "step": 1}\n')
    mine = t / 'mine.png'
    mine.write_text('keep')
    return [t, '--out', mine], f'{mine} exists: pass --force to replace it'


def _syntax(t):
    p = t / 'broken.py'
    p.write_text('model = dict(\n')
    return [p], f'{p}:1: '


def _file_work_dir(t):
    (t / 'afile').write_text('x')
    return [DEMO_UPERNET, '--work-dir', t / 'afile'], f'work dir {t / "afile"} is a file'


CASES = {
    'memory_plan --gpus 0': ('memory_plan', lambda t: (['--gpus', '0'], 'argument --gpus: 0 is outside [1, inf]')),
    'memory_plan --mfu 1.5': ('memory_plan', lambda t: (['--mfu', '1.5'], 'argument --mfu: 1.5 is outside (0, 1]')),
    'memory_plan --config missing': ('memory_plan', lambda t: (['--config', t / 'no.py'], f'config not found: {t / "no.py"}')),
    'benchmark --batch 0': ('benchmark', lambda t: (['--batch', '0'], 'argument --batch: 0 is outside [1, inf]')),
    'benchmark --preset tiny': ('benchmark', lambda t: (['--preset', 'tiny'], "unknown InternViT arch 'tiny'")),
    'infer --alpha 2': ('infer', lambda t: ([DEMO_UPERNET, 'x.pth', t, '--out', t / 'o', '--alpha', '2'],
                                            'argument --alpha: 2 is outside [0, 1]')),
    'export --min-agreement 1.5': ('export', lambda t: ([DEMO_UPERNET, 'none', '--out', t / 'b', '--min-agreement',
                                                         '1.5'], 'argument --min-agreement: 1.5 is outside [0, 1]')),
    'infer --device gpu': ('infer', lambda t: ([DEMO_UPERNET, 'x.pth', t, '--out', t / 'o', '--device', 'gpu'],
                                               "argument --device: expected cpu, cuda or cuda:N, got 'gpu'")),
    'linear_probe --device cuda:99': ('linear_probe', lambda t: ([DEMO_CLS, '--device', 'cuda:99'],
                                                                 'argument --device: cuda:99: ')),
    'linear_probe: unknown linear_probe key': ('linear_probe', lambda t: (
        [DEMO_CLS, '--work-dir', t / 'w', '--cfg-options', 'linear_probe.epoch=3'], "linear_probe: unknown key(s) ['epoch']")),
    'make_demo_data --num-train 0': ('make_demo_data', lambda t: (['--out', t / 'd', '--num-train', '0'],
                                                                  'argument --num-train: 0 is outside [1, inf]')),
    'plot_curve: corrupt scalars.json': ('plot_curve', _bad_json),
    'plot_curve: --out exists': ('plot_curve', _existing_out),
    'plot_curve: nothing to plot': ('plot_curve', lambda t: ([t], f'no vis_data/scalars.json found under {t}')),
    'train: missing config': ('train', lambda t: ([t / 'no.py'], f'config not found: {t / "no.py"}')),
    'train: config that does not parse': ('train', _syntax),
    'train: not a config file': ('train', lambda t: ([ROOT / 'README.md'], 'not a config file (expected .py')),
    'train: work dir is a file': ('train', _file_work_dir),
    'train: drop_path_rate 1.5': ('train', lambda t: ([DEMO_UPERNET, '--work-dir', t / 'w', '--cfg-options',
                                                       'model.backbone.drop_path_rate=1.5'],
                                                      'drop_path_rate must be in [0, 1), got 1.5')),
    'test: missing config': ('test', lambda t: ([t / 'no.py', t / 'c.pth'], f'config not found: {t / "no.py"}')),
    'consolidate: missing source': ('consolidate_checkpoint', lambda t: ([t / 'nowhere', t / 'o.pth'],
                                                                         f'{t / "nowhere"}: not found')),
    'convert --info: missing file': ('convert_checkpoint', lambda t: ([t / 'no.pth', '--info'],
                                                                     f'checkpoint not found: {t / "no.pth"}')),
    'linear_probe: missing data': ('linear_probe', lambda t: ([DEMO_CLS, '--work-dir', t / 'w', '--cfg-options',
                                                               f'train_dataloader.dataset.data_root={t / "nodata"}'],
                                                              'image folder not found')),
}


# these two start a training run (seconds of start-up and a Runner): the slow loop only
SLOW_CASES = ('train: work dir is a file', 'train: drop_path_rate 1.5')


@pytest.mark.parametrize('case', [pytest.param(c, marks=pytest.mark.slow) if c in SLOW_CASES else c
                                  for c in sorted(CASES)])
def test_tools_refuse_bad_input_in_one_line(case, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv('PERCEPTION_DEBUG', raising=False)
    tool, make = CASES[case]
    argv, want = make(tmp_path)
    if tool == 'train' and '--work-dir' in argv:  # builds a Runner: its loggers outlive capsys; run it as users do
        r = subprocess.run([sys.executable, str(ROOT / 'tools/train.py'), *map(str, argv)], capture_output=True,
                           text=True, timeout=300, cwd=ROOT)
        status, err = r.returncode, r.stderr
        last = err.strip().splitlines()[-1] if err.strip() else ''
    else:
        status, last, err = _run(capsys, tool, *argv)
    assert status == 2, (status, err[-2000:])
    assert want in last and 'Traceback' not in err, err[-2000:]
    if case == 'plot_curve: --out exists':
        assert (tmp_path / 'mine.png').read_text() == 'keep'


def test_infer_refuses_an_output_path_that_is_a_file(tmp_path):
    import cv2

    from perception.deploy.io import segment_images
    cv2.imwrite(str(tmp_path / 'a.jpg'), np.zeros((16, 16, 3), np.uint8))
    (tmp_path / 'out').write_text('mine')
    with pytest.raises(NotADirectoryError, match=r'--out .*out is a file: expected a folder'):
        segment_images(None, str(tmp_path / 'a.jpg'), str(tmp_path / 'out'))
    assert (tmp_path / 'out').read_text() == 'mine'


class _Echo:
    def segment(self, img, alpha=0.5, side_by_side=False):
        return np.zeros(img.shape[:2], np.uint8), img


def test_images_whose_decoding_changes_them_are_announced(tmp_path):
    """A 16-bit or RGBA PNG is read as training reads it (8-bit colour), and the log says so by name."""
    import cv2

    from perception.deploy.io import segment_images
    cv2.imwrite(str(tmp_path / 'deep.png'), (np.arange(16 * 16 * 3).reshape(16, 16, 3) * 80).astype(np.uint16))
    cv2.imwrite(str(tmp_path / 'alpha.png'), np.full((16, 16, 4), 200, np.uint8))
    cv2.imwrite(str(tmp_path / 'plain.png'), np.full((16, 16, 3), 200, np.uint8))
    msgs = []
    res = segment_images(_Echo(), str(tmp_path), str(tmp_path / 'out'), log=lambda m, lvl: msgs.append((lvl, m)))
    assert len(res['written']) == 6
    warned = {Path(m.split(':')[0]).name: m for lvl, m in msgs if lvl == logging.WARNING}
    assert set(warned) == {'deep.png', 'alpha.png'}, msgs
    assert '16-bit values scaled to 8 bits' in warned['deep.png'] and 'alpha channel dropped' in warned['alpha.png']


# ---- classification data: what would train wrong is refused naming the file ----

@pytest.fixture(scope='module')
def cls_data(tmp_path_factory):
    from perception.datasets.demo_cls_data import make_cls_demo_dataset
    return make_cls_demo_dataset(tmp_path_factory.mktemp('cls') / 'shapes_cls', seed=5, train_per_class=4,
                                 val_per_class=2)


def _cls_dataset(root, split, **kw):
    from mmengine.config import Config
    from mmengine.registry import init_default_scope
    from mmpretrain.registry import DATASETS

    import perception  # noqa: F401
    from perception.classification.datasets import pass_num_classes
    from perception.setup_env import register_all_modules
    register_all_modules()
    init_default_scope('mmpretrain')
    cfg = pass_num_classes(Config.fromfile(DEMO_CLS))
    d = dict(cfg[f'{split}_dataloader'].dataset, data_root=str(root), **kw)
    return DATASETS.build(d)


def _val_line(root, text):
    with open(root / 'meta' / 'val.txt', 'a') as f:
        f.write(text + '\n')


CLS_CASES = {
    'ann file lists a missing image': ('val', lambda r: os.remove(r / 'val' / 'val_00001.JPEG'),
                                       r'val\.txt:2: image .*val_00001\.JPEG not found'),
    'ann line without a label': ('val', lambda r: _val_line(r, 'val_00000.JPEG'),
                                 r'val\.txt:\d+: expected "relative/path/to/image label"'),
    'label the head cannot score': ('val', lambda r: _val_line(r, 'val_00000.JPEG 9'),
                                    r'val\.txt: labels \[9\] are outside \[0, 6\) \(the head has 6 classes\)'),
    'a 7th class folder for a 6-class head': (
        'train', lambda r: shutil.copytree(r / 'train' / 'c0_disc', r / 'train' / 'c6_star'),
        r'train: labels \[6\] are outside \[0, 6\)'),
    'numeric class folders with a name': ('numeric', None, r"class folder\(s\) \['c0_disc', .*are not numbers"),
}


@pytest.mark.parametrize('case', sorted(CLS_CASES))
def test_classification_data_that_would_train_wrong_is_refused(cls_data, tmp_path, case):
    root = tmp_path / 'd'
    shutil.copytree(cls_data, root)
    split, damage, want = CLS_CASES[case]
    if damage:
        damage(root)
    with pytest.raises((ValueError, FileNotFoundError), match=want):
        if split == 'numeric':
            _cls_dataset(root, 'train', numeric_classes=True)
        else:
            _cls_dataset(root, split)
    assert len(_cls_dataset(cls_data, 'train')) == 24  # the intact copy loads


def test_an_unreadable_classification_image_is_named(cls_data, tmp_path):
    root = tmp_path / 'd'
    shutil.copytree(cls_data, root)
    bad = sorted((root / 'train' / 'c2_triangle').iterdir())[0]
    bad.write_bytes(b'')
    ds = _cls_dataset(root, 'train')
    idx = next(i for i in range(len(ds)) if ds.get_data_info(i)['img_path'] == str(bad))
    with pytest.raises(ValueError, match=f'sample {idx} \\({bad}\\)'):
        ds[idx]


# ---- linear probe feature cache: a real kill -9 mid-extraction, then the rerun resumes ----

KILL_AFTER_PROGRESS = '''
import os, runpy, signal, sys
from perception.classification.fast_probe.cache import FeatureCache
write = FeatureCache.write_manifest
def write_then_die(self, m):
    write(self, m)
    if self.dir.endswith('train') and m.get('num_done', 0) >= int(os.environ['KILL_AFTER']):
        os.kill(os.getpid(), signal.SIGKILL)
FeatureCache.write_manifest = write_then_die
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name='__main__')
'''


@pytest.mark.slow
def test_linear_probe_killed_mid_extraction_resumes_with_the_same_features(cls_data, tmp_path):
    wd = tmp_path / 'w'
    opts = ['linear_probe.extract_batch_size=4', 'linear_probe.save_every_s=0', 'linear_probe.epochs=2',
            'linear_probe.lrs=[0.01]', 'linear_probe.n_last_blocks=[1]',
            f'model.backbone.init_cfg.checkpoint={cls_data / "tiny_backbone.safetensors"}']
    opts += [f'{s}_dataloader.dataset.data_root={cls_data}' for s in ('train', 'val', 'test')]
    cmd = [str(ROOT / 'tools/linear_probe.py'), DEMO_CLS, '--work-dir', str(wd), '--cfg-options', *opts]
    env = dict(os.environ, KILL_AFTER='8', PYTHONPATH=str(ROOT))
    r = subprocess.run([sys.executable, '-c', KILL_AFTER_PROGRESS, *cmd], capture_output=True, text=True,
                       timeout=600, env=env, cwd=ROOT)
    assert r.returncode == -signal.SIGKILL, (r.returncode, r.stderr[-2000:])
    manifest = wd / 'feature_cache' / 'train' / 'manifest.json'
    assert json.loads(manifest.read_text())['num_done'] == 8 and not (wd / 'best_head.pth').exists()
    r = subprocess.run([sys.executable, *cmd], capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-2000:]
    assert 'resuming feature extraction at image 8 of 24' in r.stdout + r.stderr
    assert json.loads(manifest.read_text())['num_done'] == 24 and (wd / 'best_head.pth').is_file()
    # the same features as one uninterrupted extraction
    from mmengine.config import Config

    from perception.classification.fast_probe import extract_features
    cfg = Config.fromfile(DEMO_CLS)
    cfg.merge_from_dict({o.split('=')[0]: o.split('=', 1)[1] for o in opts if 'data_root' in o or 'checkpoint' in o})
    extract_features(cfg, 'train', str(tmp_path / 'fresh'), n_last_blocks=1, batch_size=4)
    fresh = np.load(tmp_path / 'fresh' / 'train' / 'features.npy')
    resumed = np.load(wd / 'feature_cache' / 'train' / 'features.npy')
    assert np.abs(fresh.astype(np.float32) - resumed.astype(np.float32)).max() < 1e-2


# ---- export: a real kill -9 with the new bundle half made; the next export cleans up ----

KILL_BEFORE_MOVE = '''
import os, runpy, signal, sys
import perception.export.api as api
def die(tmp, out_dir):
    os.kill(os.getpid(), signal.SIGKILL)
api.move_into_place = die
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name='__main__')
'''


@pytest.mark.slow
def test_export_killed_before_the_swap_keeps_the_old_bundle_and_the_next_run_cleans_up(tmp_path):
    out = tmp_path / 'bundle'
    cmd = [str(ROOT / 'tools/export.py'), DEMO_UPERNET, 'none', '--out', str(out), '--format', 'safetensors']
    r = subprocess.run([sys.executable, *cmd], capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-2000:]
    first = (out / 'manifest.json').read_bytes()
    r = subprocess.run([sys.executable, '-c', KILL_BEFORE_MOVE, *cmd], capture_output=True, text=True, timeout=600,
                       cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert r.returncode == -signal.SIGKILL, r.stderr[-2000:]
    left = [p.name for p in tmp_path.iterdir() if p.name != 'bundle']
    assert len(left) == 1 and left[0].startswith('.bundle.') and left[0].endswith('.tmp'), left
    assert (out / 'manifest.json').read_bytes() == first  # the old bundle is untouched
    r = subprocess.run([sys.executable, *cmd], capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-2000:]
    assert f'removed {tmp_path / left[0]} (left by an interrupted export)' in r.stdout + r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ['bundle']
    assert json.loads((out / 'manifest.json').read_text())['format'] == json.loads(first)['format']


def test_a_bundle_moved_aside_by_a_killed_swap_is_put_back(tmp_path):
    """Where the OS cannot exchange two folders in one step the old bundle is renamed aside first: a
    kill between the two renames leaves no bundle at --out, and the next export restores it."""
    from perception.export.bundle_io import recover_leftovers
    aside = tmp_path / '.bundle.old-0123abcd'
    aside.mkdir()
    (aside / 'manifest.json').write_text(json.dumps({'format': 'perception-segmentation-bundle', 'version': 2,
                                                     'model_id': '0123abcd', 'files': {}}))
    half = tmp_path / '.bundle.k2j4_x9q.tmp'
    half.mkdir()
    mine = tmp_path / '.bundle.notmine'
    mine.mkdir()
    msgs = []
    recover_leftovers(tmp_path / 'bundle', msgs.append)
    assert (tmp_path / 'bundle' / 'manifest.json').is_file() and not aside.exists() and not half.exists()
    assert mine.is_dir()  # not a name an export makes: left alone
    assert any('restored the bundle' in m for m in msgs) and any('left by an interrupted export' in m for m in msgs)


def test_segmenting_again_removes_what_an_interrupted_run_left_and_only_that(tmp_path):
    import cv2

    from perception.common.files import atomic_write
    from perception.deploy.io import segment_images
    cv2.imwrite(str(tmp_path / 'a.jpg'), np.zeros((16, 16, 3), np.uint8))
    out = tmp_path / 'out'
    out.mkdir()
    try:  # what a kill in the middle of writing a_label.png leaves: atomic_write's temporary file
        with atomic_write(out / 'a_label.png') as tmp:
            tmp.write_bytes(b'half')
            left = tmp
            raise KeyboardInterrupt
    except KeyboardInterrupt:
        pass
    left.write_bytes(b'half')  # atomic_write removes it on an exception; a kill would not have
    other = out / '.b_label.png.abcd1234.tmp'
    other.write_bytes(b'not this run')
    msgs = []
    segment_images(_Echo(), str(tmp_path / 'a.jpg'), str(out), log=lambda m, lvl: msgs.append(m))
    assert not left.exists() and other.exists()
    assert sorted(p.name for p in out.iterdir()) == ['.b_label.png.abcd1234.tmp', '.perception-outputs.json',
                                                     'a_label.png', 'a_overlay.jpg']
    assert any('removed 1 temporary file(s) an interrupted run left' in m for m in msgs)
