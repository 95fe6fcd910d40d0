"""Fast ImageNet-style linear probing over cached frozen features (many heads in one pass).

    python tools/linear_probe.py CONFIG [--work-dir DIR] [--cache-dir DIR] [--overwrite] [--amp]
                                        [--benchmark]

Extracts cls / mean-patch features of the frozen backbone once per split (progress bar; an
interrupted run resumes where it stopped; a cache made with another checkpoint, transform or image
list is refused), trains a grid of learning rates x feature choices (``linear_probe`` in the config)
on them, prints the table, and saves ``best_head.pth`` and ``cls_patch_head.pth`` (the latter loads
with the config: ``tools/test.py CONFIG WORK_DIR/cls_patch_head.pth``). ``--benchmark`` also times
one epoch of the plain probe that reruns the backbone, for comparison.
"""
import argparse
import os.path as osp
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from perception.common.cli import run_main, torch_device  # noqa: E402  (torch-free)
from perception.config import DictAction  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('config')
    p.add_argument('--work-dir')
    p.add_argument('--cache-dir', help='default WORK_DIR/feature_cache')
    p.add_argument('--overwrite', action='store_true', help='rebuild a cache that does not match')
    p.add_argument('--amp', action='store_true', help='bf16 autocast for the backbone')
    p.add_argument('--device', type=torch_device, default='cpu')
    p.add_argument('--benchmark', action='store_true', help='also time one epoch of the plain probe')
    p.add_argument('--cfg-options', nargs='+', action=DictAction)
    args = p.parse_args(argv)
    from perception.config import load_config
    from mmengine.logging import MMLogger
    from benchmarks.probe import plain_probe_epoch_seconds
    from perception.classification.fast_probe import run_linear_probe
    cfg = load_config(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    work_dir = args.work_dir or osp.join('work_dirs', osp.splitext(osp.basename(args.config))[0] + '_sweep')
    MMLogger.get_instance('perception', log_level='INFO')
    out = run_linear_probe(cfg, work_dir, args.cache_dir, args.device, args.amp, args.overwrite)
    best = out['results'][out['best']]
    print(f"\n{out['num_heads']} heads; best {out['best']}: top-1 {best['top1']:.2f}, top-5 {best['top5']:.2f} "
          f"(chance {100.0 / int(cfg.model.head.num_classes):.1f}); feature extraction {out['extract_s']:.1f} s, "
          f"one sweep epoch {out['epoch_s'] * 1000:.0f} ms")
    print(f"saved {out['best_checkpoint']} and {out['config_checkpoint']} ({out['config_head']}, loadable by the config)")
    if args.benchmark:
        plain = plain_probe_epoch_seconds(cfg, args.device)
        print(f"plain probe (backbone rerun, 1 head): {plain:.2f} s per epoch; cached sweep ({out['num_heads']} "
              f"heads): {out['epoch_s']:.3f} s per epoch -> {plain / out['epoch_s']:.0f}x less per epoch")
        from benchmarks.machine import machine_line
        print(f'# measured on: {machine_line(args.device)}')


if __name__ == '__main__':
    sys.exit(run_main(main))
