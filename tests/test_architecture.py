"""Import contracts between perception's parts (docs/architecture.md), read from the source with ast:
function-level imports count. Each contract fails on the first new import that breaks it."""
import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / 'perception'
# No import cycle is left (registration happens where each class is defined); none may come back.
KNOWN_CYCLE = set()
# The layers of docs/architecture.md, bottom up: a part imports only parts of lower levels, or of
# its own level without forming a cycle. A new part must be placed here (and in the doc).
LEVELS = {
    'common': 0, 'compat': 0, 'layers': 0, 'registry': 0,
    'deploy': 1, 'checkpoint': 1,
    'models': 2, 'visualization': 2,
    'segmentation': 3, 'classification': 3, 'datasets': 3, 'engine': 3, 'zero_shot': 3,
    'config': 4, 'apis': 4, 'inference': 4, 'export': 4, 'memory_plan': 4, 'consolidate': 4, 'setup_env': 4,
    'demo': 4,
}


def _part(rel: Path) -> str:
    """The part a module belongs to: a subpackage name, or the top-level module's name."""
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def import_graph():
    """{part: {parts it imports}} for perception's own modules (package __init__ excluded)."""
    edges = {}
    for f in ROOT.rglob('*.py'):
        rel = f.relative_to(ROOT)
        if rel == Path('__init__.py'):
            continue
        me = _part(rel)
        pkg = ['perception', *rel.parts[:-1]]
        for node in ast.walk(ast.parse(f.read_text())):
            mods = []
            if isinstance(node, ast.Import):
                mods = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = pkg[:len(pkg) - node.level + 1]
                    mods = ['.'.join(base + ([node.module] if node.module else []))]
                    if not node.module:  # from . import x, y
                        mods = ['.'.join(base + [a.name]) for a in node.names]
                else:
                    mods = [node.module or '']
            for m in mods:
                parts = m.split('.')
                if parts[0] == 'perception' and len(parts) > 1 and parts[1] != me:
                    edges.setdefault(me, set()).add(parts[1])
    return edges


def _reaches(edges, a, b):
    seen, todo = set(), [a]
    while todo:
        x = todo.pop()
        for y in edges.get(x, ()):
            if y == b:
                return True
            if y not in seen:
                seen.add(y)
                todo.append(y)
    return False


def test_leaf_packages_import_only_downwards():
    edges = import_graph()
    allowed = {
        'common': set(),                                   # shared torch-free helpers: nothing of ours
        'layers': set(),                                   # plain PyTorch: nothing of ours
        'deploy': {'common'},                              # torch-free runtime: the shared helpers only
        'checkpoint': {'layers', 'common'},                # reads/converts state dicts; builds no model
        'registry': set(),                                 # imported by every registering module
    }
    for part, ok in allowed.items():
        extra = edges.get(part, set()) - ok
        assert not extra, f'perception/{part} imports {sorted(extra)}; it may import only {sorted(ok)}'


def test_no_new_import_cycles():
    edges = import_graph()
    parts = sorted(set(edges) | {p for v in edges.values() for p in v})
    in_cycles = {a for a in parts if any(_reaches(edges, a, b) and _reaches(edges, b, a) for b in parts if b != a)}
    new = in_cycles - KNOWN_CYCLE
    assert not new, (f'{sorted(new)} joined an import cycle (parts that import each other, directly or not); '
                     'see docs/architecture.md')
    gone = KNOWN_CYCLE - in_cycles
    assert not gone, f'{sorted(gone)} left the import cycle: remove them from KNOWN_CYCLE so it stays that way'


def test_imports_go_down_the_levels():
    edges = import_graph()
    parts = {p.stem if p.parent == ROOT else p.relative_to(ROOT).parts[0] for p in ROOT.rglob('*.py')} - {'__init__'}
    unplaced = parts - set(LEVELS)
    assert not unplaced, f'{sorted(unplaced)}: place new parts in LEVELS and docs/architecture.md'
    for a, targets in edges.items():
        for b in targets:
            assert LEVELS[b] <= LEVELS[a], (f'perception/{a} (level {LEVELS[a]}) imports perception/{b} '
                                            f'(level {LEVELS[b]}): imports go down, see docs/architecture.md')


@pytest.mark.slow
def test_import_perception_is_light_and_registers_on_use():
    """`import perception` (and `perception.deploy`, `perception.common`) load no torch; the subpackages register."""
    import subprocess
    import sys
    code = ('import sys, perception, perception.deploy, perception.common.cli, perception.common.dtypes, '
            'perception.common.files, perception.common.geometry, perception.common.images; '
            'assert "torch" not in sys.modules, "torch imported"; '
            'assert "mmengine" not in sys.modules, "mmengine imported"; '
            'from mmseg.registry import MODELS, WEIGHT_INITIALIZERS; assert "InternViT" not in MODELS.module_dict; '
            'import perception.models; assert MODELS.get("InternViT") is perception.InternViT; '
            'from mmengine.registry import WEIGHT_INITIALIZERS as ROOT; import perception.engine; '
            'assert ROOT.get("Pretrained").__module__.startswith("mmengine"), "root initializer replaced"; '
            'assert WEIGHT_INITIALIZERS.module_dict["Pretrained"].__module__ == "perception.engine.pretrained"; '
            'print("ok")')
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and out.stdout.strip() == 'ok', out.stderr[-2000:]


# Where a module may grow to before it is split by concern (docs/architecture.md).
MAX_LINES = 400
SOURCES = [ROOT, ROOT.parent / 'tools', ROOT.parent / 'benchmarks']


def _our_modules():
    for top in SOURCES:
        yield from sorted(top.rglob('*.py')) if top.is_dir() else ()


def test_no_module_over_the_line_budget():
    long = {str(f.relative_to(ROOT.parent)): n for f in _our_modules()
            if (n := len(f.read_text().splitlines())) > MAX_LINES}
    assert not long, f'modules over {MAX_LINES} lines (split them by concern): {long}'


def test_no_private_name_is_imported_across_modules():
    """``from perception.x import _name`` (or a relative one) couples a module to another's internals:
    a name used elsewhere is public (no leading underscore) in its one home."""
    found = []
    for f in _our_modules():
        for node in ast.walk(ast.parse(f.read_text())):
            if not isinstance(node, ast.ImportFrom):
                continue
            ours = node.level > 0 or (node.module or '').split('.')[0] in ('perception', 'benchmarks')
            for a in node.names:
                if ours and a.name.startswith('_') and not a.name.startswith('__'):
                    found.append(f'{f.relative_to(ROOT.parent)}:{node.lineno} imports {a.name}')
    assert not found, 'private names imported across modules: ' + '; '.join(found)


def test_the_package_holds_no_benchmarks():
    """Benchmarks live in the top-level ``benchmarks/`` folder (as in timm and mmseg), not in the product."""
    inside = sorted(str(f.relative_to(ROOT.parent)) for f in ROOT.rglob('*.py')
                    if 'bench' in f.stem or f.stem == 'gpu_check')
    assert not inside, f'benchmark modules inside the package: {inside}'
    assert (ROOT.parent / 'benchmarks' / '__init__.py').is_file()
