"""Why ``tools/benchmark_adapter.py`` also times with ``--malloc keep``: on these virtual machines, writing
into memory the process has just been given by the kernel costs several times what the arithmetic does.

    python -m benchmarks.page_reuse [--mib 200] [--repeats 6] [--gap 3]

The same elementwise add of two ``--mib`` float32 tensors, (a) into a fresh result each time (glibc hands a
block this large back to the kernel on free, so every result is new pages, each a page fault) and (b) into one
result allocated once (``out=``), with ``--gap`` idle seconds before each (the blocks of a forward run between
two uses of such a buffer). Measured here (Zen 4 VM, virtio balloon with free page reporting on): (a) 80 ms,
(b) 21 ms, so 3/4 of a fresh add is the kernel's. The adapter's forward makes dozens of such temporaries
(its 3200-channel stride-4 map alone is 200 MiB in float32), and there the same add measured from 0.18 s to
2.8 s from run to run; with ``MALLOC_MMAP_MAX_=0`` (freed blocks stay in the process and are reused) the
adapter's added time at depth 4 fell from 10.6 s to 5.7 s. PyTorch's CPU launcher (``torch.backends.xeon.
run_cpu``) preloads jemalloc / tcmalloc for the same reason.
"""
import argparse
import glob
import statistics
import time

import torch


def balloon_reporting() -> str:
    for path in glob.glob('/sys/bus/virtio/devices/*'):
        try:
            driver = open(f'{path}/uevent').read()
            feats = open(f'{path}/features').read().strip()
        except OSError:
            continue
        if 'virtio_balloon' in driver or 'VIRTIO_ID=5' in driver:  # 5: the balloon device id
            return f"virtio balloon, free page reporting {'on' if len(feats) > 5 and feats[5] == '1' else 'off'}"
    return 'no virtio balloon device'


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--mib', type=int, default=200)
    p.add_argument('--repeats', type=int, default=6)
    p.add_argument('--gap', type=float, default=3.0, help='idle seconds before each add')
    args = p.parse_args(argv)
    from benchmarks.machine import machine_line
    n = args.mib * 2 ** 20 // 4
    a, b = torch.randn(n), torch.randn(n)
    out = torch.empty(n)
    fresh, reused = [], []
    for _ in range(args.repeats):
        time.sleep(args.gap)
        t = time.perf_counter()
        c = a + b
        fresh.append(time.perf_counter() - t)
        del c
        time.sleep(args.gap)
        t = time.perf_counter()
        torch.add(a, b, out=out)
        reused.append(time.perf_counter() - t)
    print(f'# {machine_line()}; {balloon_reporting()}')
    print(f'add of two {args.mib} MiB float32 tensors, {args.repeats} times, {args.gap:g} s apart, seconds:')
    for name, ts in (('fresh result', fresh), ('reused result', reused)):
        print(f'  {name:14s} median {statistics.median(ts):.3f}  min {min(ts):.3f}  max {max(ts):.3f}')


if __name__ == '__main__':
    main()
