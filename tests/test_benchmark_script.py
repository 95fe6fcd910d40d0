import datetime
import os
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.backbone import bench_arch, forward_flops, measure_in_subprocess

ROOT = Path(__file__).resolve().parents[1]


def test_flops_formula_for_6b_block():
    arch = bench_arch('6b-block')
    assert arch['num_layers'] == 1 and arch['embed_dims'] == 3200
    n = 1297
    linears = 2 * n * (3200 * 9600 + 3200 * 3200 + 2 * 3200 * 12800)
    attn = 2 * (2 * n * n * 3200)
    assert forward_flops(arch, n) == linears + attn


@pytest.mark.slow
def test_measure_reports_time_and_memory():
    r = measure_in_subprocess(preset='300m-block', layers=None, size=(56, 42), batch=1, dtype='fp32',
                              backend='math', device='cpu', warmup=0, repeats=2, amp=False)
    assert r['tokens'] == 4 * 3 + 1 and r['backend'] == 'math' and r['median_s'] > 0
    assert r['peak_mb'] >= 0 and r['layers'] == 1


@pytest.mark.slow
def test_cli_prints_table():
    out = subprocess.run([sys.executable, str(ROOT / 'tools/benchmark.py'), '--preset', '300m-block', '--size',
                          '28', '--dtype', 'fp32', '--backend', 'math', 'sdpa', '--repeats', '1', '--warmup', '0',
                          '--part', 'model', 'attention'], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert '| 300m-block | 1 | 28x28 |' in out.stdout and 'forward / floor' in out.stdout
    assert out.stdout.count('| 300m-block attention |') == 2
    assert out.stdout.startswith('# measured on: ')  # every printed table says where and when
    first = out.stdout.splitlines()[0]
    assert datetime.date.today().isoformat() in first and ' cores' in first and 'torch ' in first


def test_machine_line_names_the_cpu_its_bf16_support_and_the_cores():
    from benchmarks.machine import machine_line
    line = machine_line()
    model = next(ln.split(':', 1)[1].strip() for ln in open('/proc/cpuinfo') if ln.startswith('model name'))
    flags = next(ln.split(':', 1)[1].split() for ln in open('/proc/cpuinfo') if ln.startswith('flags'))
    assert model in line and f'{len(os.sched_getaffinity(0))} cores' in line
    native = 'avx512_bf16' in flags or 'amx_bf16' in flags
    assert ('native bf16' in line and 'no native bf16' not in line) if native else 'no native bf16' in line
    assert ('avx2' in line) == ('avx2' in flags)
