"""Peak memory of one training step of a segmentation config at real size, random weights.

    python tools/memory_step.py [--config mmcfg/internvit/upernet_internvit-6b-frozen_1xb2-accum8-80k_ade20k-504x504.py]
                                [--img 504] [--batch 2] [--layers N] [--device cpu|cuda] [--compute auto|bf16|fp32]

Builds the segmentor as the config says (a frozen bf16 backbone: no fp32 copy), runs forward,
backward and the optimizer update of the trainable parameters on random images and labels, and
prints the peak at each phase: the process's peak RSS on a CPU (what a machine must have), the
allocator's peak on a GPU. docs/segmentation.md ("Frozen 6B on one GPU") quotes its output.
"""
import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from perception.common.cli import positive_int, run_main, torch_device  # noqa: E402  (torch-free)

DEFAULT = 'mmcfg/internvit/upernet_internvit-6b-frozen_1xb2-accum8-80k_ade20k-504x504.py'


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--config', default=DEFAULT)
    p.add_argument('--img', type=positive_int, default=504)
    p.add_argument('--batch', type=positive_int, default=2)
    p.add_argument('--layers', type=positive_int, default=None, help='a shallower backbone (quick checks)')
    p.add_argument('--device', type=torch_device, default='cpu')
    p.add_argument('--compute', choices=['auto', 'bf16', 'fp32'], default='auto')
    p.add_argument('--json', action='store_true')
    args = p.parse_args(argv)
    from benchmarks.machine import machine_line
    from benchmarks.memory import train_step_memory
    r = train_step_memory(args.config, args.img, args.batch, args.layers, args.device, args.compute)
    r['machine'] = machine_line(args.device)
    if args.json:
        print(json.dumps(r, indent=1))
        return 0
    print(f"# measured on: {r['machine']}")
    print(f"{Path(r['config']).name}: {r['layers']} blocks, {r['img']}x{r['img']}, batch {r['batch']}, "
          f"{r['device']}, compute {r['compute']}")
    print(f"backbone weights {r['backbone_weights_gib']:.2f} GiB ({r['backbone_dtype']}); trainable "
          f"{r['trainable_params_m']:.1f} M parameters = {r['trainable_state_gib']:.2f} GiB with grads and AdamW state")
    print('| phase | peak GiB | seconds |\n|---|---|---|')
    print(f"| start | {r['start_gib']:.2f} | |")
    print(f"| model built | {r['after_build_gib']:.2f} | {r['build_s']:.0f} |")
    print(f"| forward (loss) | {r['after_forward_gib']:.2f} | {r['forward_s']:.0f} |")
    print(f"| backward + update | **{r['after_step_gib']:.2f}** | {r['backward_update_s']:.0f} |")
    return 0


if __name__ == '__main__':
    sys.exit(run_main(main))
