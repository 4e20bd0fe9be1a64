"""Issue 24, part 2: do thin near poles and wires survive refinement with the shipped weights?

    PYTHONPATH=. python benchmarks/thin_structures.py [--sizes 1024 2048] [--phases N] [--off]

For 1-, 2- and 4-px poles (vertical) and wires (horizontal) at disparity 1.0 in front of a
0.3–0.5 background, at every column (row) phase of the old quantile subsample's stride around
the middle and at both borders, refines (high: the map; low: a quarter of its size) and prints
how many stay nearer than their background and keep at least half their contrast. `--off`
turns the thin-structure restoration off (`Refiner.keep_thin`), to see N_r alone.
"""

from __future__ import annotations

import argparse
import time

import cv2
import numpy as np

import sddr_core
from tests.test_thin_structures import contrast, with_structure


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="+", default=[1024, 2048])
    parser.add_argument("--off", action="store_true")
    parser.add_argument("--phases", type=int, help="only the first N phases (default: all)")
    args = parser.parse_args()
    refiner = sddr_core.load_refiner("default", device="cpu")
    refiner.keep_thin = not args.off
    print("| size | structure | width | cases | nearer | ≥ half the contrast | min kept "
          "| median kept |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for size in args.sizes:
        old_stride = size * size // 65536
        for vertical in (True, False):
            for width in (1, 2, 4):
                phases = min(old_stride, args.phases or old_stride)
                starts = [0, *range(size // 2, size // 2 + phases), size - width]
                kept = []
                began = time.perf_counter()
                for start in starts:
                    high = with_structure(size, width, start, vertical)
                    low = cv2.resize(high, (size // 4, size // 4), interpolation=cv2.INTER_AREA)
                    refined = refiner.refine(low, high)
                    kept.append(contrast(refined, width, start, vertical)
                                / contrast(high, width, start, vertical))
                kept = np.array(kept)
                print(f"| {size}² | {'pole' if vertical else 'wire'} | {width} | {len(kept)} | "
                      f"{(kept > 0).sum()} | {(kept >= 0.5).sum()} | {kept.min():.2f} | "
                      f"{np.median(kept):.2f} |  ({time.perf_counter() - began:.0f} s)",
                      flush=True)


if __name__ == "__main__":
    main()
