"""Deformable-attention sampling on CPU at the ViT-Adapter's real sizes: the ``grid_sample`` path
(:func:`~perception.layers.deform_attn.ms_deform_attn_pytorch`, which traced / exported graphs run) against
the ``embedding_bag`` path (:func:`~perception.layers.deform_attn.ms_deform_attn_gather`, which eager CPU runs),
forward under ``no_grad`` and forward + backward, median of interleaved repeats after warm-up.

Sizes (InternViT-6B adapter, 512 px, patch 16, deform_ratio 0.25: 25 heads x 32 channels, 4 points): the
extractor samples one 32 x 32 level for the 5376 tokens of the three finer levels; the injector samples
those three levels (64 x 64, 32 x 32, 16 x 16) for the 1024 ViT tokens.

Run: ``OMP_NUM_THREADS=2 python -m benchmarks.deform_sampling [--repeats 5] [--warmup 1]``. Prints figures
only (not a test: tests/test_deform_attn.py checks the two paths agree).
"""
import argparse
import statistics
from typing import Callable, Dict, List, Sequence, Tuple

import torch

from perception.layers.deform_attn import ms_deform_attn_gather, ms_deform_attn_pytorch

from .machine import machine_line
from .timing import interleaved_times

HEADS, DIMS, POINTS = 25, 32, 4
#: name -> (value levels (h, w), queries)
CASES = {
    'extractor': ([(32, 32)], 5376),
    'injector': ([(64, 64), (32, 32), (16, 16)], 1024),
}


def inputs(shapes: Sequence[Tuple[int, int]], queries: int, grad: bool, seed: int = 0) -> List[torch.Tensor]:
    """value ``[1, S, heads, D]``, locations (some just outside the maps, as trained offsets reach) and
    softmax weights, float32."""
    g = torch.Generator().manual_seed(seed)
    L = len(shapes)
    value = torch.randn(1, sum(h * w for h, w in shapes), HEADS, DIMS, generator=g)
    loc = torch.rand(1, queries, HEADS, L, POINTS, 2, generator=g) * 1.1 - 0.05
    w = torch.randn(1, queries, HEADS, L * POINTS, generator=g).softmax(-1).view(1, queries, HEADS, L, POINTS)
    return [t.requires_grad_(grad) for t in (value, loc, w)]


def step(fn: Callable, shapes, xs: List[torch.Tensor], backward: bool) -> Callable:
    """One forward (no_grad) or one forward + backward of a sampling function on fixed inputs."""
    def forward():
        with torch.no_grad():
            fn(xs[0], shapes, xs[1], xs[2])

    def train():
        for t in xs:
            t.grad = None
        fn(xs[0], shapes, xs[1], xs[2]).sum().backward()
    return train if backward else forward


def measure(repeats: int, warmup: int) -> List[Dict]:
    rows = []
    for name, (shapes, queries) in CASES.items():
        for backward in (False, True):
            xs = inputs(shapes, queries, grad=backward)
            fns = [step(f, shapes, xs, backward) for f in (ms_deform_attn_pytorch, ms_deform_attn_gather)]
            gs, eb = ([t * 1e3 for t in ts] for ts in interleaved_times(fns, repeats, warmup))
            rows.append(dict(case=name, pass_='fwd+bwd' if backward else 'fwd (no_grad)',
                             grid_sample_ms=statistics.median(gs), embedding_bag_ms=statistics.median(eb),
                             grid_sample_min=min(gs), embedding_bag_min=min(eb)))
    return rows


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--repeats', type=int, default=5)
    ap.add_argument('--warmup', type=int, default=1)
    args = ap.parse_args(argv)
    print(f'# measured on {machine_line()}')
    print(f'# heads {HEADS}, {DIMS} channels, {POINTS} points; median (and best) ms of {args.repeats} '
          f'interleaved repeats after {args.warmup} warm-up; ratio = grid_sample / embedding_bag medians')
    print(f'{"case":<10} {"queries":>7} {"levels":<20} {"pass":<14} {"grid_sample ms":>16} '
          f'{"embedding_bag ms":>16} {"ratio":>6}')
    for r in measure(args.repeats, args.warmup):
        shapes, queries = CASES[r['case']]
        levels = ' '.join(f'{h}x{w}' for h, w in shapes)
        gs = f'{r["grid_sample_ms"]:.1f} ({r["grid_sample_min"]:.1f})'
        eb = f'{r["embedding_bag_ms"]:.1f} ({r["embedding_bag_min"]:.1f})'
        print(f'{r["case"]:<10} {queries:>7} {levels:<20} {r["pass_"]:<14} {gs:>16} {eb:>16} '
              f'{r["grid_sample_ms"] / r["embedding_bag_ms"]:>5.2f}x')


if __name__ == '__main__':
    main()
