"""perception.compat: the stack beside a current transformers. The dev environment (setup.cfg) holds what
InternVL users have, pycocotools and transformers 5.x: there mmpretrain's models fail to import unless
perception patched transformers first. Each process-level claim runs in a fresh interpreter."""
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest

from perception.compat import HOMES, find_pruneable_heads_and_indices, patch_transformers

ROOT = Path(__file__).resolve().parents[1]
DEMO_UPERNET = ROOT / 'mmcfg/demo/upernet_internvit-tiny_1xb8-1k_demo-shapes-112x112.py'


def _python(*argv, timeout=300):
    r = subprocess.run([sys.executable, *map(str, argv)], capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    return r.returncode, r.stdout.strip(), r.stderr.strip()


def test_without_the_patch_mmpretrain_fails_and_a_late_patch_says_so():
    code = ('import sys\n'
            'try:\n    import mmpretrain.models\nexcept Exception as e:\n    print(f"{type(e).__name__}: {e}")\n'
            'else:\n    sys.exit("imported")\n'
            'from perception.compat import patch_transformers\n'
            'patch_transformers()\n')
    status, out, err = _python('-c', code)
    assert status, (f'import mmpretrain.models works without perception.compat: this environment (transformers '
                    f'{version("transformers")}, pycocotools {version("pycocotools")}) no longer needs the patch '
                    '(see perception/compat.py), or no longer tests it')
    assert out == 'TypeError: NoneType takes no arguments', out
    last = err.splitlines()[-1]
    assert last.startswith('ImportError: an import of mmpretrain.models.multimodal already failed in this process'), err
    assert 'call perception.register_all_modules(), before mmseg.models, mmdet.models or mmpretrain.models' in last


def test_the_stack_imports_once_perception_registers():
    code = ('import perception; perception.register_all_modules()\n'
            'import mmdet.models, mmpretrain.models\n'
            'from mmseg.models.decode_heads import Mask2FormerHead\n'
            'from mmseg.registry import MODELS as SEG\n'
            'from mmpretrain.registry import MODELS as PRE\n'
            'assert SEG.get("InternViT") is PRE.get("InternViT") is perception.InternViT\n'
            # the multimodal models themselves, not mmpretrain's install-hint placeholders
            'assert isinstance(PRE.get("BlipCaption"), type) and isinstance(PRE.get("OFA"), type)\n'
            'from mmdet.models.utils import vlfuse_helper\n'
            'assert vlfuse_helper.apply_chunking_to_forward is not None  # GLIP: the real helper, not a placeholder\n'
            'print("ok")\n')
    status, out, err = _python('-c', code)
    assert status == 0 and out == 'ok', err[-3000:]


def test_train_tool_runs_through_the_stack(tmp_path):
    """tools/train.py for 2 iterations: the config's ``custom_imports`` import ``perception.models`` before
    anything else of perception, and it imports mmseg's models (through mmdet, mmpretrain's)."""
    from perception.datasets.demo_data import make_demo_dataset
    data = make_demo_dataset(tmp_path / 'shapes', seed=1, num_train=4, num_val=1)
    opts = [f'{s}_dataloader.{k}' for s in ('train', 'val', 'test')
            for k in (f'dataset.data_root={data}', 'num_workers=0', 'persistent_workers=False')]
    opts += ['train_dataloader.batch_size=2', 'train_cfg.max_iters=2', 'train_cfg.val_interval=2',
             'default_hooks.checkpoint.interval=2']
    status, out, err = _python(ROOT / 'tools/train.py', DEMO_UPERNET, '--work-dir', tmp_path / 'w', '--fp32',
                               '--cfg-options', *opts, timeout=600)
    assert status == 0, err[-3000:]
    assert (tmp_path / 'w' / 'iter_2.pth').is_file()


def test_patch_is_idempotent_and_keeps_what_transformers_has(monkeypatch):
    from transformers import modeling_utils
    patch_transformers()
    assert all(getattr(modeling_utils, name) is not None for name in HOMES)
    mine = object()
    monkeypatch.setattr(modeling_utils, 'GenerationMixin', mine)  # as if transformers still exported it
    before = {name: getattr(modeling_utils, name) for name in HOMES}
    patch_transformers()
    patch_transformers()
    assert {name: getattr(modeling_utils, name) for name in HOMES} == before


def test_patch_does_nothing_without_transformers(monkeypatch):
    monkeypatch.setitem(sys.modules, 'transformers', None)  # find_spec -> None, import -> ImportError
    patch_transformers()


@pytest.mark.parametrize('heads, pruned, left, keep', [
    ([0, 2], set(), {0, 2}, [2, 3]),
    ([2, 0], {0}, {2}, [0, 1, 4, 5]),  # head 0 already gone: head 2 is row 1 of the 3 left
])
def test_find_pruneable_heads_and_indices_as_transformers_4_57(heads, pruned, left, keep):
    got, index = find_pruneable_heads_and_indices(heads, n_heads=3, head_size=2, already_pruned_heads=pruned)
    assert got == left and index.tolist() == keep
