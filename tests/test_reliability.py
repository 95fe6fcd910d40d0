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


@pytest.mark.slow
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


@pytest.mark.slow
def test_resume_without_last_checkpoint_picks_the_newest_complete_one(data, tmp_path):
    wd = tmp_path / 'w'
    assert _train(data, wd, 2, keep=3).returncode == 0
    os.remove(wd / 'last_checkpoint')  # mmengine: "Auto resumed from the latest checkpoint None", from scratch
    (wd / 'iter_3.pth').write_bytes((wd / 'iter_2.pth').read_bytes()[:5000])  # a truncated newer one
    r = _train(data, wd, 4, '--resume', keep=3)
    log = r.stdout + r.stderr
    assert r.returncode == 0, log[-3000:]
    assert 'iter_3.pth is incomplete' in log and 'resumed epoch: 0, iter: 2' in log


@pytest.mark.slow
def test_training_into_a_work_dir_with_checkpoints_is_refused(data, tmp_path):
    wd = tmp_path / 'w'  # what an earlier run left (the refusal looks at names, before anything is built)
    wd.mkdir()
    (wd / 'iter_1.pth').write_bytes(b'PK\x03\x04 not a whole zip')
    (wd / 'last_checkpoint').write_text(str(wd / 'iter_1.pth'))
    before = {f: _sha(wd / f) for f in os.listdir(wd) if f.endswith('.pth')}
    r = _train(data, wd, 1)
    assert r.returncode == 2 and r.stderr.strip().splitlines()[-1].startswith(
        f'error: work dir {wd} already holds checkpoints (iter_1.pth): --resume continues'), r.stderr[-2000:]
    assert {f: _sha(wd / f) for f in os.listdir(wd) if f.endswith('.pth')} == before
    os.remove(wd / 'last_checkpoint')
    r = _train(data, wd, 2, '--resume')
    assert r.returncode == 2 and 'no complete checkpoint' in r.stderr.strip().splitlines()[-1], r.stderr[-2000:]


@pytest.mark.parametrize('case', ['16-bit labels', 'rgb annotation', 'png among jpgs', 'not a png',
                                  'empty image'])
def test_label_maps_and_image_folders_that_would_change_meaning_are_refused(data, tmp_path, case):
    """mmseg reads label maps as 8 bits (258 would train as 2) and squeezes channels; a .png in a
    folder of .jpg images would be left out. Each is one error naming the file."""
    import shutil

    import cv2
    import numpy as np
    from mmengine.registry import init_default_scope

    from perception.datasets.segmentation import DemoShapesDataset
    init_default_scope('mmseg')
    root = tmp_path / 'd'
    shutil.copytree(data, root)
    anns = sorted((root / 'annotations/training').glob('*.png'))
    ann = anns[0]
    seg = cv2.imread(str(ann), cv2.IMREAD_UNCHANGED)
    if case == '16-bit labels':
        seg16 = seg.astype(np.uint16)
        seg16[:4, :4] = 258
        cv2.imwrite(str(ann), seg16)
        want = r'is a 16-bit PNG with labels up to 258'
    elif case == 'rgb annotation':
        cv2.imwrite(str(ann), np.repeat(seg[:, :, None], 3, axis=2))
        want = r'is a RGB PNG: expected one channel'
    elif case == 'not a png':
        ann.write_bytes(b'GIF89a' + b'\0' * 40)
        want = r'is not a readable PNG'
    elif case == 'empty image':
        img = sorted((root / 'images/training').glob('*.jpg'))[0]
        img.write_bytes(b'')
        want = 'sample 0 .*' + str(img).replace('.', r'\.')
    else:
        img = sorted((root / 'images/training').glob('*.jpg'))[0]
        cv2.imwrite(str(img.with_suffix('.png')), cv2.imread(str(img)))
        want = r'images/training holds 1 image\(s\) that are not \*\.jpg \(.*\.png\): they would be left out'
    pipeline = [dict(type='LoadImageFromFile'), dict(type='LoadAnnotations', reduce_zero_label=True),
                dict(type='CheckSegMap', num_classes=6)]
    with pytest.raises(ValueError, match=want) as e:
        ds = DemoShapesDataset(data_root=str(root), pipeline=pipeline,
                               data_prefix=dict(img_path='images/training', seg_map_path='annotations/training'))
        for i in range(len(ds)):
            ds[i]
    if case not in ('png among jpgs', 'empty image'):
        assert str(ann) in str(e.value)


@pytest.mark.parametrize('case', ['cfg-options without =', 'resume a weights file', 'resume an empty file',
                                  'folder without images', 'misspelt model key'])
def test_cli_refusals_are_one_line(data, tmp_path, case):
    import torch
    wd = tmp_path / 'w'
    if case == 'cfg-options without =':
        r = subprocess.run([sys.executable, str(ROOT / 'tools/train.py'), DEMO_LINEAR, '--cfg-options', 'foo'],
                           capture_output=True, text=True, timeout=300)
        want = "--cfg-options: expected KEY=VALUE, got 'foo'"
    elif case == 'misspelt model key':
        r = subprocess.run([sys.executable, str(ROOT / 'tools/train.py'), DEMO_LINEAR, '--work-dir', str(wd),
                            '--cfg-options', 'model.backbone.atch=6b'], capture_output=True, text=True, timeout=300)
        want = "error: model.backbone.atch: InternViT has no argument 'atch' (did you mean 'arch'?)"
    elif case.startswith('resume'):
        f = tmp_path / 'weights.pth'
        if case == 'resume a weights file':
            torch.save({'blocks.0.attn.qkv.weight': torch.zeros(2, 2)}, f)
            want = f'--resume {f}: not a training checkpoint of this project'
        else:
            f.write_bytes(b'')
            want = f'checkpoint {f} is empty (0 bytes)'
        r = _train(data, wd, 1, '--resume', str(f))
    else:  # the inputs are checked before the model is loaded (it may take minutes)
        (tmp_path / 'empty').mkdir()
        r = subprocess.run([sys.executable, str(ROOT / 'tools/infer.py'), DEMO_LINEAR, str(wd / 'iter_1.pth'),
                            str(tmp_path / 'empty'), '--out', str(tmp_path / 'o')],
                           capture_output=True, text=True, timeout=300)
        want = f'no images (.jpg, .jpeg, .png, .bmp, .tif, .tiff, .webp) in the folder {tmp_path / "empty"}'
    assert r.returncode == 2, (r.returncode, r.stderr[-2000:])
    last = r.stderr.strip().splitlines()[-1]
    assert want in last and 'Traceback' not in r.stderr, r.stderr[-2000:]


@pytest.mark.parametrize('paramwise, want', [
    (dict(layer_decay=0.9), r"unknown key\(s\) 'layer_decay' \(did you mean 'layer_decay_rate'\?\)"),
    (dict(layer_decay_rate=0.9, custom_keys={'head': dict(lr_mult=10)}), r"unknown key\(s\) 'custom_keys'"),
    (dict(layer_decay_rate=1.5), r'layer_decay_rate must be in \(0, 1\], got 1.5'),
    (dict(layer_decay_rate=0.9, num_layers=48), r'num_layers is 48 but the backbone has 6 layers'),
])
def test_layer_decay_settings_that_would_be_ignored_or_wrong_are_refused(paramwise, want):
    from torch import nn

    from perception.engine.layer_decay import InternViTLayerDecayOptimWrapperConstructor

    class Segmentor(nn.Module):
        def __init__(self):
            super().__init__()
            self.backbone = nn.Linear(2, 2)
            self.backbone.num_layers = 6

    with pytest.raises(ValueError, match=want):
        ctor = InternViTLayerDecayOptimWrapperConstructor(
            dict(type='OptimWrapper', optimizer=dict(type='AdamW', lr=1e-3)), paramwise)
        ctor(Segmentor())


def test_two_inputs_that_would_write_one_output_name_are_refused(tmp_path):
    import cv2
    import numpy as np

    from perception.deploy import segment_images
    for sub in ('a', 'b'):
        (tmp_path / sub).mkdir()
        cv2.imwrite(str(tmp_path / sub / 'x.jpg'), np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(ValueError, match=r'a/x\.jpg, .*b/x\.jpg would all write x_label\.png / x_overlay\.jpg'):
        segment_images(None, str(tmp_path), str(tmp_path / 'out'))
    assert not (tmp_path / 'out').exists()


def test_cli_errors_are_one_line_and_debug_shows_the_traceback(tmp_path):
    import cv2
    import numpy as np
    cv2.imwrite(str(tmp_path / 'a.jpg'), np.zeros((8, 8, 3), np.uint8))
    cmd = [sys.executable, str(ROOT / 'tools/infer.py'), '--backend', 'onnx', str(tmp_path / 'nowhere'),
           str(tmp_path), '--out', str(tmp_path / 'o')]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and r.stderr.strip().splitlines()[-1] == f'error: bundle not found: {tmp_path / "nowhere"}'
    assert 'Traceback' not in r.stderr
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=dict(os.environ, PERCEPTION_DEBUG='1'))
    assert r.returncode == 1 and 'Traceback' in r.stderr and 'DeployError: bundle not found' in r.stderr


@pytest.mark.parametrize('opts, want', [
    ({'trian_cfg': dict(max_iters=3)}, "trian_cfg: not a Runner setting (did you mean 'train_cfg'?)"),
    ({'optim_wraper': {}}, "optim_wraper: not a Runner setting (did you mean 'optim_wrapper'?)"),
    ({'train_cfg.max_iter': 3}, "train_cfg.max_iter: IterBasedTrainLoop has no argument 'max_iter' "
                                "(did you mean 'max_iters'?)"),
    ({'val_cfg.fp61': True}, "val_cfg.fp61: ValLoop has no argument 'fp61' (did you mean 'fp16'?)"),
    ({'default_hooks.checkpoint.intervl': 3}, "default_hooks.checkpoint.intervl: SafeCheckpointHook has no argument "
                                              "'intervl' (did you mean 'interval'?)"),
    ({'optim_wrapper.optimizer.betas2': 3}, "optim_wrapper.optimizer.betas2: AdamW has no argument 'betas2'"),
    ({'optim_wrapper.clip_gard': None}, "optim_wrapper.clip_gard: AmpOptimWrapper has no argument 'clip_gard' "
                                        "(did you mean 'clip_grad'?)"),
    ({'param_scheduler': [dict(type='LinearLR', start_factor=0.1, ends=10)]},
     "param_scheduler[0].ends: LinearLR has no argument 'ends' (did you mean 'end'?)"),
])
def test_misspelt_runner_keys_are_refused(opts, want):
    """What mmengine would ignore (a top-level key one typo from a Runner argument, a CheckpointHook key
    swallowed by its **kwargs) or fail on deep in a build: a ConfigError naming the path, up front."""
    from perception.config import ConfigError, prepare_config
    with pytest.raises(ConfigError) as e:
        prepare_config(DEMO_LINEAR, cfg_options=opts)
    assert want in str(e.value)


@pytest.mark.slow
def test_every_shipped_config_passes_the_key_checks():
    """No false alarms: every leaf config in mmcfg/ (its own variables included) passes both checks."""
    from mmengine.config import Config

    from perception.config import check_model_keys, check_runner_keys
    from perception.setup_env import register_all_modules
    register_all_modules()
    leaves = [p for p in sorted((ROOT / 'mmcfg').rglob('*.py')) if '_base_' not in p.parts]
    assert len(leaves) > 40
    for p in leaves:
        cfg = Config.fromfile(str(p))
        scope = cfg.get('default_scope') or 'mmseg'
        check_model_keys(cfg.model, scope=scope)
        check_runner_keys(cfg, scope=scope)


@pytest.mark.slow
def test_test_tool_refuses_a_misspelt_key_in_one_line(tmp_path):
    r = subprocess.run([sys.executable, str(ROOT / 'tools/test.py'), DEMO_LINEAR, str(tmp_path / 'x.pth'),
                        '--cfg-options', 'test_cfg.fp61=True'], capture_output=True, text=True, timeout=300)
    assert r.returncode == 2, r.stderr[-2000:]
    assert "test_cfg.fp61: TestLoop has no argument 'fp61'" in r.stderr.strip().splitlines()[-1]
    assert 'Traceback' not in r.stderr


@pytest.mark.slow
def test_export_refuses_a_whole_image_count_out_of_range(tmp_path):
    r = subprocess.run([sys.executable, str(ROOT / 'tools/export.py'), DEMO_LINEAR, 'none', '--out', str(tmp_path / 'b'),
                        '--whole-images', '7'], capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and '--whole-images must be within 0..5, got 7' in r.stderr
    assert not (tmp_path / 'b').exists()


def test_demo_data_is_reused_only_when_made_with_the_same_parameters(tmp_path):
    """The demo printed 58.78 mIoU on a folder generated earlier with other counts (issue 17): now a
    folder is reused only for the same seed, counts, size and generator version, complete; one made
    by the generator with other parameters (or half-written) is regenerated, saying why; a folder the
    generator did not make is refused and left as it is."""
    import json

    from perception.datasets.demo_data import ensure_demo_dataset
    said = []
    root = tmp_path / 'shapes'
    ensure_demo_dataset(root, seed=1, num_train=4, num_val=2, log=said.append)
    img = root / 'images/training/demo_t00000.jpg'
    stamp = img.stat().st_mtime_ns
    ensure_demo_dataset(root, seed=1, num_train=4, num_val=2, log=said.append)
    assert said[-1].startswith('reusing') and img.stat().st_mtime_ns == stamp
    ensure_demo_dataset(root, seed=1, num_train=3, num_val=2, log=said.append)
    assert "'num_train': (4, 3)" in said[-2] and len(list((root / 'images/training').glob('*.jpg'))) == 3
    (root / 'images/validation/demo_v00001.jpg').unlink()  # a file lost since
    ensure_demo_dataset(root, seed=1, num_train=3, num_val=2, log=said.append)
    assert 'num_val on disk' in said[-2] and len(list((root / 'images/validation').glob('*.jpg'))) == 2
    meta = json.loads((root / 'meta.json').read_text())
    (root / 'meta.json').write_text(json.dumps(dict(meta, complete=False)))  # a killed generation
    ensure_demo_dataset(root, seed=1, num_train=3, num_val=2, log=said.append)
    assert "'complete': (False, True)" in said[-2]
    foreign = tmp_path / 'mine'
    foreign.mkdir()
    (foreign / 'notes.txt').write_text('keep me')
    with pytest.raises(ValueError, match='was not made by the demo generator'):
        ensure_demo_dataset(foreign, seed=1, num_train=3, num_val=2)
    assert (foreign / 'notes.txt').read_text() == 'keep me' and len(list(foreign.iterdir())) == 1


@pytest.mark.slow
def test_classification_demo_data_and_the_cli_follow_the_same_rule(tmp_path):
    from perception.datasets.demo_cls_data import ensure_cls_demo_dataset
    said = []
    root = tmp_path / 'cls'
    ensure_cls_demo_dataset(root, seed=2, train_per_class=2, val_per_class=1, size=(56, 56), log=said.append)
    ensure_cls_demo_dataset(root, seed=2, train_per_class=2, val_per_class=1, size=(56, 56), log=said.append)
    assert said[-1].startswith('reusing')
    (root / 'tiny_backbone.safetensors').unlink()
    ensure_cls_demo_dataset(root, seed=2, train_per_class=2, val_per_class=1, size=(56, 56), log=said.append)
    assert 'backbone on disk' in said[-2] and (root / 'tiny_backbone.safetensors').is_file()
    ensure_cls_demo_dataset(root, seed=3, train_per_class=2, val_per_class=1, size=(56, 56), log=said.append)
    assert "'seed': (2, 3)" in said[-2]
    foreign = tmp_path / 'photos'
    foreign.mkdir()
    (foreign / 'a.jpg').write_bytes(b'x')
    r = subprocess.run([sys.executable, str(ROOT / 'tools/make_demo_data.py'), '--out', str(foreign)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and 'was not made by the demo generator' in r.stderr.strip().splitlines()[-1]
    assert sorted(p.name for p in foreign.iterdir()) == ['a.jpg']
