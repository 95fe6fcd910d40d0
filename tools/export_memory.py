"""Peak memory and time of a low-memory export (``tools/export.py --low-memory``) at real size.

    python tools/export_memory.py                         # the 6B UperNet (random weights), 504x504 check
    python tools/export_memory.py --layers 4 --keep DIR   # 6B width at reduced depth (a quick look)

Runs ``tools/export.py CONFIG none --low-memory --verify-size 504x504 --whole-images N`` in a child
process (random weights: ``model.backbone.init_cfg=None``) and samples its memory every 0.5 s from
``/proc/PID/status``: resident set (VmRSS), of which anonymous (process memory: RssAnon) and
file-backed (the memory-mapped ONNX weights: RssFile, page cache the kernel can drop), and the peak
(VmHWM). Prints the export's own stage timings and a table for docs/export.md.
"""
import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from perception.common.cli import run_main, positive_int  # noqa: E402  (torch-free)
CONFIG_6B = ROOT / 'mmcfg/internvit/upernet_internvit-6b-frozen_8xb2-80k_ade20k-504x504.py'


def _status(pid):
    out = {}
    try:
        with open(f'/proc/{pid}/status') as f:
            for line in f:
                k = line.split(':')[0]
                if k in ('VmRSS', 'VmHWM', 'RssAnon', 'RssFile'):
                    out[k] = int(line.split()[1]) / 2 ** 20  # GiB
    except OSError:
        pass
    return out


def reduced_config(out_dir: Path, layers: int, config: Path = CONFIG_6B) -> Path:
    """``config`` with ``layers`` blocks of its width (out_indices spread over them)."""
    from perception.layers.vision_transformer import parse_arch
    from perception.config import load_config
    arch = parse_arch(load_config(str(config)).model.backbone.arch)
    arch['num_layers'] = layers
    step = max(layers // 4, 1)
    idx = tuple(min(layers - 1, step * (i + 1) - 1) for i in range(4))
    path = out_dir / f'{config.stem}_{layers}-layers.py'
    path.write_text(f"_base_ = ['{config}']\nmodel = dict(backbone=dict(arch={dict(arch, _delete_=True)!r}, "
                    f"out_indices={idx!r}))\n")
    return path


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--config', default=str(CONFIG_6B))
    p.add_argument('--layers', type=positive_int, default=None, help='reduce the depth (default: the config\'s)')
    p.add_argument('--whole-images', type=int, default=0, help='whole-image checks (each: minutes for the 6B)')
    p.add_argument('--verify-size', default='504x504')
    p.add_argument('--keep', default=None, help='write the bundle here and keep it (default: a temp folder)')
    args = p.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    work = Path(tempfile.mkdtemp(prefix='export_memory_'))
    try:
        config = Path(args.config)
        if args.layers:
            config = reduced_config(work, args.layers, config)
        out = Path(args.keep) if args.keep else work / 'bundle'
        cmd = [sys.executable, str(ROOT / 'tools/export.py'), str(config), 'none', '--low-memory', '--out', str(out),
               '--verify-size', args.verify_size, '--whole-images', str(args.whole_images),
               '--cfg-options', 'model.backbone.init_cfg=None']
        print('$ ' + ' '.join(cmd), flush=True)
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                env=dict(os.environ, PYTHONUNBUFFERED='1'))
        peak = {'VmRSS': 0.0, 'RssAnon': 0.0, 'RssFile': 0.0, 'VmHWM': 0.0}
        done = threading.Event()

        def sample():
            while not done.is_set():
                s = _status(proc.pid)
                for k, v in s.items():
                    peak[k] = max(peak[k], v)
                time.sleep(0.5)
        th = threading.Thread(target=sample, daemon=True)
        th.start()
        lines = []
        for line in proc.stdout:
            lines.append(line)
            if re.search(r'INFO - (low-memory|backbone built|torch.export|ONNX|onnxruntime|whole|exported|loaded)',
                         line) or 'Error' in line:
                s = _status(proc.pid)
                print(f'[{time.perf_counter() - t0:7.0f} s, RSS {s.get("VmRSS", 0):5.2f} GiB, anon '
                      f'{s.get("RssAnon", 0):5.2f}] {line.strip()[:220]}', flush=True)
        rc = proc.wait()
        done.set()
        th.join()
        wall = time.perf_counter() - t0
        if rc != 0:
            print(''.join(lines[-40:]))
            return rc
        size = sum(f.stat().st_size for f in out.iterdir() if f.is_file())
        print(f'\n| model | layers | peak RSS GiB (VmHWM) | peak anonymous GiB | peak file-backed GiB | bundle GB | '
              f'wall min |\n|---|---|---|---|---|---|---|\n| {Path(args.config).stem} | {args.layers or "all"} | '
              f'{peak["VmHWM"]:.2f} | {peak["RssAnon"]:.2f} | {peak["RssFile"]:.2f} | {size / 1e9:.2f} | '
              f'{wall / 60:.1f} |')
        from benchmarks.machine import machine_line
        print(f'\n# measured on: {machine_line()}')
        return 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == '__main__':
    sys.exit(run_main(main))
