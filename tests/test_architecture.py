"""Import contracts between perception's parts (docs/architecture.md), read from the source with ast:
function-level imports count. Each contract fails on the first new import that breaks it."""
import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / 'perception'
# The one import cycle that exists today: models/registry.py imports the task packages to register
# them, and they import models (issue 12: registration where each class is defined). It may only shrink.
KNOWN_CYCLE = {'classification', 'datasets', 'engine', 'models'}


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
        'layers': set(),                                   # plain PyTorch: nothing of ours
        'deploy': set(),                                   # torch-free runtime: nothing of ours
        'checkpoint': {'layers', 'deploy'},                # reads/converts state dicts; builds no model
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
