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


# ---------------------------------------------------------------- the ViT-Adapter at real size (benchmarks/adapter.py)
ADAPTER_TINY = dict(embed_dims=128, num_layers=4, num_heads=4, feedforward_channels=256, norm_type='rms_norm',
                    qk_normalization=True, qkv_bias=False, patch_size=16, img_size=64)


def vit_params(C, F, L, patch, img):
    """InternViT-6B layout (RMSNorm, q/k norm, no qkv bias, LayerScale), written out: patch embedding,
    position embedding with its class entry, and per block qkv, proj (+bias), fc1, fc2 (+biases), two
    norms, q/k norms and two LayerScales."""
    block = 3 * C * C + (C * C + C) + (C * F + F) + (F * C + C) + 6 * C
    return 3 * patch * patch * C + C + ((img // patch) ** 2 + 1) * C + L * block


def test_adapter_model_state_counts_the_6b_exactly():
    from benchmarks.adapter import model_state
    gib = 2 ** 30
    full = model_state('6b')  # built on meta: no memory
    n = vit_params(3200, 12800, 48, 16, 512)
    assert n == 5_905_824_000 and round(full['vit_params_m'] * 1e6) == n
    assert abs(full['vit_weights_gib'] - 2 * n / gib) < 1e-9
    assert full['trainable_params_m'] > 300  # adapter + UperNet 1536 + FCN 1536
    assert abs(full['trainable_state_gib'] - 16 * full['trainable_params_m'] * 1e6 / gib) < 1e-6
    four = model_state('6b', depth=4)
    assert round(four['vit_params_m'] * 1e6) == vit_params(3200, 12800, 4, 16, 512)
    assert four['trainable_params_m'] == full['trainable_params_m']  # four interactions at any depth
    assert model_state('6b', channels=256)['trainable_params_m'] < full['trainable_params_m']


def test_adapter_linear_estimate_is_the_line_through_the_extreme_depths():
    from benchmarks.adapter import linear_estimate
    rows = [dict(depth=8, v=3.0 + 0.25 * 8), dict(depth=4, v=3.0 + 0.25 * 4), dict(depth=6, v=99.0)]
    assert linear_estimate(rows, 'v', 48) == 3.0 + 0.25 * 48
    assert linear_estimate(rows[:1], 'v', 48) is None


@pytest.mark.slow
def test_adapter_benchmark_prints_memory_and_speed(tmp_path):
    import json
    from benchmarks.adapter import has_weights_dtype
    gib = 2 ** 30
    out_json = tmp_path / 'r.json'
    cmd = [sys.executable, str(ROOT / 'tools/benchmark_adapter.py'), '--arch', json.dumps(ADAPTER_TINY),
           '--img', '64', '--batch', '2', '--channels', '256', '--repeats', '2', '--json', str(out_json)]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.startswith('# measured on: ') and ' cores' in out.stdout.splitlines()[0]
    assert '## One training step' in out.stdout and '## Forward' in out.stdout
    assert ('no weights_dtype argument' in out.stdout) != has_weights_dtype()
    r = json.loads(out_json.read_text())
    m, s = r['memory'][0], r['speed'][0]
    assert out.stdout.count(f"| 4 | 2 | {m['vit_weights_gib']:.2f} |") == 1 and f"**{s['added_pct']:+.1f}%**" in out.stdout
    # speed runs once with glibc malloc as it is and once keeping freed memory (the setting reached the process)
    assert [(x['malloc'], x['malloc_env']['MALLOC_MMAP_MAX_']) for x in r['speed']] == [('default', None), ('keep', '0')]
    assert all(f"| 4 | {x['malloc']} | {x['vit_alone_s']:.3f} |" in out.stdout for x in r['speed'])
    # memory: the ViT in bf16 (2 bytes a parameter), fp32 trainable weights, a gradient each, AdamW's two moments
    assert m['vit_weights_gib'] * gib == 2 * vit_params(128, 256, 4, 16, 64)
    assert m['gradients_gib'] == m['trainable_weights_gib'] == m['trainable_params_m'] * 1e6 * 4 / gib
    assert 2 * m['trainable_weights_gib'] <= m['optimizer_state_gib'] <= 2 * m['trainable_weights_gib'] + 1e-4
    assert m['start_gib'] <= m['after_build_gib'] <= m['after_forward_gib'] <= m['after_backward_gib'] <= m['peak_gib']
    held = m['vit_weights_gib'] + m['trainable_weights_gib'] + m['gradients_gib'] + m['optimizer_state_gib']
    assert m['peak_gib'] - m['start_gib'] >= held > 0.1  # the peak holds all of them at once
    assert 0 < m['loss'] < 50 and not m['bn_eval']
    # speed: the adapter adds time; its parts are inside its forward; 4 injectors + 4 extractors + 2 extra
    assert s['adapter_s'] > s['vit_alone_s'] > 0 and s['added_pct'] > 0 and s['deform_calls'] == 10
    p = s['parts_s']
    assert 0 <= p['deform sampling'] <= p['deform attn'] <= p['injectors'] + p['extractors']
    assert p['vit blocks'] + p['spm'] + p['injectors'] + p['extractors'] <= s['adapter_s']
