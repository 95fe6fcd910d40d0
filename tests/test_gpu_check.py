"""tools/gpu_check.py without a GPU: argument checks, the attention part at a toy width on the CPU
(parity against the fp32 math block, an unavailable kernel reported as such), the tables."""
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / 'tools'))
import gpu_check as tool  # noqa: E402

from benchmarks import gpu_check  # noqa: E402


def test_arguments():
    a = tool.parse_args(['--layers', '8', '16', '--iters', '5'])
    assert a.layers == [8, 16] and a.iters == 5 and a.device == 'cuda'
    for bad in (['--layers', '0'], ['--iters', '-1'], ['--backends', 'flash']):
        with pytest.raises(SystemExit):
            tool.parse_args(bad)


def test_attention_part_on_cpu_and_its_table():
    rows = gpu_check.attention_kernels('cpu', embed_dims=64, num_heads=4, feedforward_channels=128, tokens=17, batch=2, warmup=1, repeats=2,
                                       backends=('math', 'sdpa', 'xformers'))
    by = {r['backend']: r for r in rows}
    for b in ('math', 'sdpa'):
        assert 0 < by[b]['rel_err'] < 3e-2  # bf16 vs the fp32 block
        assert by[b]['fwd_ms'] > 0 and by[b]['fwd_bwd_ms'] > 0 and by[b]['fwd_peak_mb'] is None
    assert 'error' in by['xformers']  # no CUDA kernels here: reported, not silently replaced
    table = gpu_check.attention_table(rows)
    lines = table.splitlines()
    assert len(lines) == 5 and all(ln.count('|') == lines[0].count('|') for ln in lines)
    assert '| xformers | not run:' in table and '1.00x' in lines[2]


def test_fsdp_table_and_config():
    run = dict(layers=8, gpus=1, step_s=0.316, data_s=0.005, peak_mib=24240)
    pred = dict(params_m=1432.2, total_gib=26.78, flop_per_step=5.6e13)
    table = gpu_check.fsdp_table([(run, pred)], peak_tflops=989)
    assert '| 0.316 | 0.005 | 177 (18%) | 23.67 | 26.78 | 0.88 |' in table


def test_reduced_config_keeps_the_6b_strategy(tmp_path):
    from mmengine.config import Config
    cfg = Config.fromfile(str(gpu_check.reduced_fsdp_config(tmp_path, 8, str(tmp_path / 'data'), 4)))
    assert cfg.model.backbone.arch['embed_dims'] == 3200 and cfg.model.backbone.arch['num_layers'] == 8
    assert cfg.model.backbone.out_indices == (1, 3, 5, 7) and cfg.optim_wrapper.paramwise_cfg.num_layers == 8
    assert cfg.strategy == Config.fromfile(str(gpu_check.FSDP_6B)).strategy


@pytest.mark.slow
@pytest.mark.skipif(torch.cuda.is_available(), reason='checks the no-GPU message')
def test_without_cuda_the_tool_says_so():
    out = subprocess.run([sys.executable, str(ROOT / 'tools/gpu_check.py')], capture_output=True, text=True)
    assert out.returncode != 0 and 'no CUDA GPU here' in out.stderr


@pytest.mark.slow
def test_compile_comparison_and_whole_forward_at_toy_width():
    """The compile part of gpu_check / benchmark --compile on the CPU: every timing present, the compiled
    block and the official-style layer (an independent transcription of InternVL's eager layer) agree
    with the eager block in fp32."""
    from benchmarks.compile import compile_comparison, format_compile_table
    from perception.layers.vision_transformer import parse_arch
    arch = dict(parse_arch('6b'), embed_dims=64, num_heads=4, feedforward_channels=128, num_layers=1, img_size=56)
    rows = compile_comparison(arch, size=56, batch=2, dtypes=('fp32',), repeats=1, warmup=0)
    fwd, train = rows
    assert fwd['part'] == 'forward' and train['part'] == 'forward+backward' and fwd['tokens'] == 17
    assert fwd['rel_diff'] < 1e-5 and fwd['official_rel_diff'] < 1e-5
    for k in ('eager ms', 'compiled ms', 'official ms', 'matmul floor ms'):
        assert fwd[k] > 0
    assert train['eager ms'] > 0 and train['compiled ms'] > 0
    table = format_compile_table(rows).splitlines()
    assert len(table) == 4 and all(ln.count('|') == table[0].count('|') for ln in table)
    full = gpu_check.full_forward('cpu', dict(arch, num_layers=2), batch=1, size=56, repeats=1, warmup=0)
    assert [r['compiled'] for r in full] == [False, True] and all(r['ms'] > 0 and r['mfu'] > 0 for r in full)
    assert gpu_check.full_forward_table(full).count('\n') == 3
