"""docs/custom_dataset.md, step 4, run as written in a fresh folder: the commands of its bash block,
with only what a test must add (a small dataset, --random-init since the released weights are not
here, --fp32 for CPUs without native bf16, 2 iterations instead of 2000)."""
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
GUIDE = ROOT / 'docs' / 'custom_dataset.md'
SMALL = {'make_demo_data.py': ['--num-train', '4', '--num-val', '2'],
         'train.py': ['--random-init', '--fp32', '--cfg-options', 'train_cfg.max_iters=2', 'train_cfg.val_interval=2',
                      'default_hooks.checkpoint.interval=2', 'train_dataloader.batch_size=2',
                      'train_dataloader.num_workers=0', 'train_dataloader.persistent_workers=False',
                      'val_dataloader.num_workers=0', 'val_dataloader.persistent_workers=False',
                      'test_dataloader.num_workers=0', 'test_dataloader.persistent_workers=False'],
         'test.py': ['--cfg-options', 'test_dataloader.num_workers=0', 'test_dataloader.persistent_workers=False']}


def _step4_commands():
    text = GUIDE.read_text()
    block = re.search(r'## 4\..*?```bash\n(.*?)```', text, re.S).group(1)
    return [shlex.split(re.sub(r'\s#.*$', '', line)) for line in block.splitlines() if line.strip()]


@pytest.mark.slow
def test_the_custom_dataset_guide_runs_as_written(tmp_path):
    cmds = _step4_commands()
    assert [Path(c[1]).name for c in cmds] == ['make_demo_data.py', 'train.py', 'test.py', 'infer.py']
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    for cmd in cmds:
        tool = Path(cmd[1]).name
        args = [a.replace('iter_2000.pth', 'iter_2.pth') for a in cmd[2:]]
        args = [str(ROOT / a) if a.startswith('mmcfg/') else a for a in args]  # run from a fresh folder
        r = subprocess.run([sys.executable, str(ROOT / cmd[1]), *args, *SMALL.get(tool, [])], cwd=tmp_path,
                           capture_output=True, text=True, timeout=900, env=env)
        assert r.returncode == 0, (cmd, r.stderr[-3000:])
        if tool == 'test.py':
            assert "'mIoU'" in r.stdout, r.stdout[-2000:]
    wd = tmp_path / 'work_dirs' / 'linear_internvit-300m-frozen_1xb8-2k_my-shapes-224x224'
    assert (wd / 'iter_2.pth').is_file()
    overlays = list((tmp_path / 'work_dirs' / 'my_shapes_overlays').rglob('*.png'))
    assert len(overlays) == 2
    preds = sorted((tmp_path / 'work_dirs' / 'my_shapes_predictions').glob('*_label.png'))
    assert len(preds) == 2
    label = cv2.imread(str(preds[0]), cv2.IMREAD_UNCHANGED)
    assert label.shape == (112, 112) and int(np.max(label)) < 6
