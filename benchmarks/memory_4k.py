"""Peak memory of one-stage refinement of a 3840×2160 pair on CPU (target: about 4 GB).

Run: python benchmarks/memory_4k.py [--preset small|base] [--weights FILE]
Prints one JSON object; peak memory is the process's peak resident set size, measured
before and after so the baseline (Python, torch, the input arrays) is visible too.
"""

import argparse
import json
import resource
import time

import numpy as np

import sddr_core


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--preset", default="small")
    parser.add_argument("--weights")
    args = parser.parse_args()
    if args.weights:
        refiner = sddr_core.load_refiner(args.weights, device="cpu")
    else:
        refiner = sddr_core.build_refiner(args.preset, device="cpu")
    rng = np.random.default_rng(0)
    high = rng.random((2160, 3840), dtype=np.float32)
    low = rng.random((270, 480), dtype=np.float32)
    before = peak_rss_mb()
    start = time.perf_counter()
    refined = refiner.refine(low, high)
    seconds = time.perf_counter() - start
    print(json.dumps({
        "preset": args.weights or args.preset,
        "input": "3840x2160 high, 480x270 low",
        "working_size": refiner.working_size(2160, 3840),
        "output_shape": list(refined.shape),
        "seconds": round(seconds, 2),
        "peak_rss_mb_before": round(before),
        "peak_rss_mb": round(peak_rss_mb()),
    }))


if __name__ == "__main__":
    main()
