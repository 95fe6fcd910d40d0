"""``--out`` of an export (docs/reliability.md, cases 64-67): only a bundle an export wrote is replaced.

A folder of another program that holds a ``manifest.json``, a manifest that is not JSON or not ours, one
of our bundles to which a user added files, a file, a symbolic link: refused in one line naming the folder
and the reason, before the model is built, every file left byte for byte. Folders beside ``--out`` with
the names a killed export leaves (``.NAME.XXXXXXXX.tmp``, ``.NAME.old-XXXXXXXX``) are cleaned up only
when an export made them. Real exports here write safetensors only (no tracing, seconds each)."""
import json
import os
import re
import shutil
import sys
import types
from pathlib import Path

import pytest

from conftest import run_tool
from perception.deploy.bundle import BUNDLE_FORMAT
from perception.export import ExportError, export_model, export_segmentor
from perception.export import api
from perception.export.bundle_io import IN_PROGRESS, move_into_place, recover_leftovers

ROOT = Path(__file__).resolve().parents[1]
DEMO_UPERNET = str(ROOT / 'mmcfg/demo/upernet_internvit-tiny_1xb8-1k_demo-shapes-112x112.py')


def _export(out):
    return export_segmentor(DEMO_UPERNET, None, out, formats=('safetensors',), random_init=True)


@pytest.fixture(scope='module')
def bundle(tmp_path_factory):
    """A real bundle, exported into an empty folder that already existed (which it replaces)."""
    out = tmp_path_factory.mktemp('bundles') / 'bundle'
    out.mkdir()
    m = _export(out)
    assert sorted(os.listdir(out)) == ['config.py', 'manifest.json', 'model.bf16.safetensors']
    assert json.loads((out / 'manifest.json').read_text())['model_id'] == m['model_id']
    assert sorted(os.listdir(out.parent)) == ['bundle']  # the empty folder is gone, nothing else left
    return out


def _snapshot(root: Path):
    """Every entry under ``root`` (links not followed): its bytes, its link target, or 'dir'."""
    snap = {}
    for top, dirs, files in os.walk(root):
        for n in dirs + files:
            p = Path(top, n)
            rel = str(p.relative_to(root))
            snap[rel] = (f'-> {os.readlink(p)}' if p.is_symlink() else 'dir' if p.is_dir() else p.read_bytes())
    return snap


@pytest.fixture
def no_build(monkeypatch):
    """Building, tracing or writing anything fails the test: a refusal must come before all of it."""
    def boom(*args, **kwargs):
        raise AssertionError('export work started before --out was checked')
    fake = types.ModuleType('perception.inference')
    fake.init_segmentor = boom
    monkeypatch.setitem(sys.modules, 'perception.inference', fake)
    for name in ('bundle_metadata', 'torch_export', 'export_onnx', 'export_safetensors', 'make_tmp',
                 'recover_leftovers'):
        monkeypatch.setattr(api, name, boom)


def _other_program(out, bundle):
    out.mkdir()
    (out / 'manifest.json').write_text('{"name": "my-web-app", "version": "1.2.0", "icons": []}\n')
    (out / 'index.html').write_text('<html>mine</html>\n')
    (out / 'assets').mkdir()
    (out / 'assets' / 'logo.png').write_bytes(bytes(range(256)))
    return 'its manifest.json is not a perception bundle manifest (format None'


def _not_json(out, bundle):
    out.mkdir()
    (out / 'manifest.json').write_text('name: my-app\nfiles: [a, b]\n')  # YAML, say
    (out / 'notes.txt').write_text('mine\n')
    return 'its manifest.json is not JSON (Expecting value: line 1 column 1'


def _json_list(out, bundle):
    out.mkdir()
    (out / 'manifest.json').write_text('["a.bin"]')
    (out / 'a.bin').write_bytes(b'\0\1')
    return 'its manifest.json is not a JSON object'


def _our_format_only(out, bundle):
    out.mkdir()
    (out / 'manifest.json').write_text(json.dumps({'format': BUNDLE_FORMAT, 'data': 'x.csv'}))
    (out / 'x.csv').write_text('1,2\n')
    return f"its manifest.json has format '{BUNDLE_FORMAT}' but no valid 'version'"


def _no_manifest(out, bundle):
    out.mkdir()
    (out / 'notes.txt').write_text('mine\n')
    return 'it holds no manifest.json'


def _bundle_with_user_files(out, bundle):
    shutil.copytree(bundle, out)
    (out / 'notes.txt').write_text('what I measured with this model\n')
    (out / 'results').mkdir()
    (out / 'results' / 'a_label.png').write_bytes(b'\x89PNG...')
    return 'is an export bundle, but it also holds 2 file(s) its manifest.json does not list (notes.txt, results/)'


def _bundle_with_a_file_under_a_listed_name_as_folder(out, bundle):
    shutil.copytree(bundle, out)
    (out / 'config.py').unlink()
    (out / 'config.py').mkdir()  # a listed name that is not a file: not ours to delete
    (out / 'config.py' / 'x').write_text('x')
    return 'it also holds 1 file(s) its manifest.json does not list (config.py/)'


def _a_file(out, bundle):
    out.write_text('not a folder\n')
    return 'is a file, not a bundle folder'


def _a_link(out, bundle):
    target = out.parent / 'target'
    shutil.copytree(bundle, target)
    out.symlink_to(target)
    return 'is a symbolic link (to'


FOREIGN = {'another program\'s folder with a manifest.json': _other_program, 'a manifest that is not JSON': _not_json,
           'a manifest that is a JSON list': _json_list, 'our format string without the rest': _our_format_only,
           'no manifest': _no_manifest, 'our bundle with user files': _bundle_with_user_files,
           'our bundle with a listed name that is a folder': _bundle_with_a_file_under_a_listed_name_as_folder,
           'a file': _a_file, 'a symbolic link': _a_link}


@pytest.mark.parametrize('case', list(FOREIGN))
def test_what_an_export_did_not_write_is_refused_untouched(case, bundle, tmp_path, no_build):
    out = tmp_path / 'out'
    reason = FOREIGN[case](out, bundle)
    before = _snapshot(tmp_path)
    for call in (lambda: export_segmentor(DEMO_UPERNET, None, out, random_init=True),  # before the model is built
                 lambda: export_model(None, out)):  # a built model: before it is even looked at
        with pytest.raises(ExportError) as e:
            call()
        msg = str(e.value)
        assert '\n' not in msg and f'--out {out}' in msg and reason in msg, msg
        assert _snapshot(tmp_path) == before


def test_a_parent_that_is_a_file_is_refused(tmp_path, no_build):
    (tmp_path / 'f').write_text('x')
    with pytest.raises(ExportError, match=re.escape(f'--out {tmp_path}/f/b: {tmp_path}/f is a file, not a folder')):
        export_segmentor(DEMO_UPERNET, None, tmp_path / 'f' / 'b', random_init=True)
    assert (tmp_path / 'f').read_text() == 'x'


def test_the_command_line_refuses_in_one_line(bundle, tmp_path, capsys, no_build):
    out = tmp_path / 'app'
    reason = _other_program(out, bundle)
    before = _snapshot(tmp_path)
    status, err = run_tool(capsys, 'export', DEMO_UPERNET, 'none', '--out', out)
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and f'--out {out} exists and is not an export bundle: {reason}' in lines[0], err
    # bad input: 'error: ...', status 2 ('export failed: ...', 1 is for a bundle that disagrees with PyTorch)
    assert (status, lines[0].split(':')[0]) == (2, 'error'), (status, err)
    assert _snapshot(tmp_path) == before


def test_the_swap_checks_out_again(bundle, tmp_path):
    """A file put into the bundle while the export ran: the swap is refused, the file and bundle stay."""
    out = shutil.copytree(bundle, tmp_path / 'b')
    tmp = tmp_path / '.b.abcdefgh.tmp'
    shutil.copytree(bundle, tmp)
    (out / 'notes.txt').write_text('added during the export\n')
    before = _snapshot(out)
    with pytest.raises(ExportError, match=r'does not list \(notes\.txt\)'):
        move_into_place(tmp, out)
    assert _snapshot(out) == before


def _marked(d):
    d.mkdir()
    (d / IN_PROGRESS).write_text('')
    (d / 'model.onnx').write_bytes(b'half')
    return d


def test_leftover_names_are_cleaned_up_only_when_an_export_made_them(bundle, tmp_path):
    out = tmp_path / 'b'
    foreign_tmp = tmp_path / '.b.abcdefgh.tmp'  # a user's folder that happens to have the name
    foreign_tmp.mkdir()
    (foreign_tmp / 'data.csv').write_text('1,2\n')
    foreign_old = tmp_path / '.b.old-0123abcd'  # another program's folder with a manifest.json
    _other_program(foreign_old, bundle)
    extra_old = shutil.copytree(bundle, tmp_path / '.b.old-4567abcd')  # a bundle, plus a user's file
    (extra_old / 'notes.txt').write_text('mine\n')
    foreign = _snapshot(tmp_path)
    killed = _marked(tmp_path / '.b.k2j4x9qz.tmp')  # an export killed while writing
    sealed = shutil.copytree(bundle, tmp_path / '.b.zz11yy22.tmp')  # killed before the swap
    empty = tmp_path / '.b.qqqqqqqq.tmp'  # killed right after mkdtemp
    empty.mkdir()
    aside = shutil.copytree(bundle, tmp_path / '.b.old-89abcdef')  # killed between the two renames
    msgs = []
    done = recover_leftovers(out, msgs.append)
    assert not killed.exists() and not sealed.exists() and not empty.exists() and not aside.exists()
    assert _snapshot(out) == _snapshot(bundle)  # the bundle moved aside is back, not another folder
    assert len(done) == 4 and any('restored the bundle' in m for m in done)
    assert {k: v for k, v in _snapshot(tmp_path).items() if k.split('/')[0] != 'b'} == foreign
    for p, why in ((foreign_tmp, 'it holds no manifest.json'),
                   (foreign_old, 'its manifest.json is not a perception bundle manifest'),
                   (extra_old, 'it also holds 1 file(s) its manifest.json does not list (notes.txt)')):
        assert any(m.startswith(f'left {p} alone: not a folder an export made ({why}') for m in msgs), msgs


def test_exporting_again_over_our_bundle_replaces_it(bundle, tmp_path):
    out = shutil.copytree(bundle, tmp_path / 'b')
    old_id = json.loads((out / 'manifest.json').read_text())['model_id']
    foreign_tmp = tmp_path / '.b.abcdefgh.tmp'
    foreign_tmp.mkdir()
    (foreign_tmp / 'data.csv').write_text('1,2\n')
    m = _export(out)
    assert m['model_id'] != old_id == json.loads((bundle / 'manifest.json').read_text())['model_id']
    assert json.loads((out / 'manifest.json').read_text())['model_id'] == m['model_id']
    assert sorted(os.listdir(out)) == ['config.py', 'manifest.json', 'model.bf16.safetensors']
    assert IN_PROGRESS not in m['files']
    assert sorted(os.listdir(tmp_path)) == ['.b.abcdefgh.tmp', 'b']  # the user's folder stays, nothing else left
    assert (foreign_tmp / 'data.csv').read_text() == '1,2\n'
