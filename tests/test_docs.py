"""The commands and snippets in README.md and docs/*.md hold as written: every `tools/` command line
parses with that tool's own argument parser (flags, choices, ranges), names files that exist, every
`make` target exists, every Python snippet compiles and imports names that exist, and the README's
first snippet runs and prints what its comments say. Commands that need the released weights, a
dataset or GPUs are parsed, not run (placeholders such as CONFIG / CHECKPOINT are kept)."""
import argparse
import ast
import importlib
import re
import shlex
from pathlib import Path

import pytest

from conftest import load_tool

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / 'README.md', ROOT / 'checkpoints' / 'README.md', *sorted((ROOT / 'docs').glob('*.md'))]
PLACEHOLDER = re.compile(r'^[A-Z][A-Z0-9_]*(\.pth)?$')  # CONFIG, CHECKPOINT, CONFIG_6B, OUT.pth


def _blocks(lang):
    for doc in DOCS:
        text = doc.read_text()
        for m in re.finditer(r'```(\w*)\n(.*?)```', text, re.S):
            if m.group(1) == lang:
                line = text[:m.start()].count('\n') + 1
                yield doc, line, m.group(2)


def _command_lines():
    """(doc, line, command) for every shell line of a bash block, and every inline `python tools/...`."""
    out = []
    for doc, line, body in _blocks('bash'):
        joined = body.replace('\\\n', ' ')
        for i, raw in enumerate(joined.splitlines()):
            cmd = re.sub(r'(^|\s)#.*$', '', raw).strip()
            if cmd:
                out.append((doc, line + 1 + i, cmd))
    for doc in DOCS:
        for n, text in enumerate(doc.read_text().splitlines(), 1):
            for span in re.findall(r'`(python tools/[^`]+)`', text):
                if ' / ' not in span and '...' not in span:
                    out.append((doc, n, span))
    return out


COMMANDS = _command_lines()


class _Parsed(Exception):
    pass


def _parse_only(tool: Path, argv):
    """Run the tool's ``main(argv)`` until its parser has parsed the command line."""
    mod = load_tool(tool)
    originals = {name: getattr(argparse.ArgumentParser, name) for name in ('parse_args', 'parse_intermixed_args')}
    wanted = []

    def patched(name):
        def parse(self, args=None, namespace=None):
            ns = originals[name](self, args, namespace)
            if self.add_help:  # the tool's parser (pre-parsers are add_help=False)
                raise _Parsed(ns)
            return ns
        return parse
    try:
        for name in originals:
            setattr(argparse.ArgumentParser, name, patched(name))
        try:
            mod.main(argv)
        except _Parsed as p:
            wanted.append(p.args[0])
    finally:
        for name, fn in originals.items():
            setattr(argparse.ArgumentParser, name, fn)
    assert wanted, f'{tool.name} returned without parsing its command line'
    return wanted[0]


def _make_targets():
    return set(re.findall(r'^([A-Za-z0-9_-]+):', (ROOT / 'Makefile').read_text(), re.M))


@pytest.mark.parametrize('doc, line, cmd', COMMANDS, ids=[f'{d.name}:{n}' for d, n, _ in COMMANDS])
def test_documented_command_is_valid(doc, line, cmd, monkeypatch):
    where = f'{doc.relative_to(ROOT)}:{line}: {cmd}'
    tokens = shlex.split(re.sub(r'\[([^\]]*)\]', r'\1', cmd))  # [--optional flags] as if given
    while tokens and re.fullmatch(r'[A-Z_]+=\S*', tokens[0]):  # NNODES=2 ... tools/dist_train.sh
        tokens.pop(0)
    if tokens[0] == 'make':
        assert set(tokens[1:]) <= _make_targets(), where
        return
    if tokens[0] in ('pip', 'hf', 'git', 'cd', 'export'):
        return  # not ours to parse
    if tokens[0] == 'python' and tokens[1].startswith('tools/') or tokens[0].startswith('tools/'):
        script = tokens[1] if tokens[0] == 'python' else tokens[0]
        args = tokens[2:] if tokens[0] == 'python' else tokens[1:]
        tool = ROOT / script
        assert tool.is_file(), f'{where}: no {script}'
        for a in args:  # files of this repository that the command names
            if re.match(r'(mmcfg|tools|docs|perception)/', a):
                assert (ROOT / a).exists(), f'{where}: {a} does not exist'
        if tool.suffix == '.sh':
            assert len(args) >= 2 and args[1].isdigit(), f'{where}: expected CONFIG NUM_PROCS'
            return
        monkeypatch.chdir(ROOT)
        import torch  # commands for GPU machines (--device cuda) parse as they would there
        monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)
        monkeypatch.setattr(torch.cuda, 'device_count', lambda: 8)
        try:
            _parse_only(tool, args)
        except SystemExit as e:
            pytest.fail(f'{where}: the parser refused it (exit {e.code})')
        return
    pytest.fail(f'{where}: unknown command {tokens[0]!r} (teach tests/test_docs.py about it)')


SNIPPETS = list(_blocks('python'))


@pytest.mark.parametrize('doc, line, code', SNIPPETS, ids=[f'{d.name}:{n}' for d, n, _ in SNIPPETS])
def test_documented_python_compiles_and_its_names_exist(doc, line, code):
    where = f'{doc.relative_to(ROOT)}:{line}'
    tree = ast.parse(code.replace('...', 'None'), where)
    import perception
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith('perception'):
            mod = importlib.import_module(node.module)
            for alias in node.names:
                assert hasattr(mod, alias.name), f'{where}: {node.module} has no {alias.name}'
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == 'perception':
            assert hasattr(perception, node.attr), f'{where}: perception has no {node.attr}'


def test_the_readme_first_snippet_runs_and_prints_what_it_says(capsys):
    doc, line, code = next(s for s in SNIPPETS if s[0].name == 'README.md')
    exec(compile(code, f'README.md:{line}', 'exec'), {})
    printed = capsys.readouterr().out.splitlines()
    said = re.findall(r'print\(.*\)\s*#\s*(.+)', code)
    assert len(printed) == len(said) == 2
    assert float(printed[0]) == pytest.approx(float(said[0]), abs=0.01)
    assert printed[1].count('torch.Size([1, 96, 16, 22])') == 3, printed[1]
