"""Peak memory of refining at 3840×2160: one-stage pair (target about 4 GB) or two-stage
photo (target under about 6 GB, issue 28 on a GPU).

Run: python benchmarks/memory_4k.py [--mode one-stage|two-stage] [--preset small|base]
     [--weights FILE] [--device cpu|cuda] [--dtype auto|fp32|fp16|bf16]
Prints one JSON object. On the CPU peak memory is the process's peak resident set size,
measured before and after so the baseline (Python, torch, the inputs) is visible too; on CUDA
it is the most GPU memory torch allocated (and reserved) during the refine. Two-stage uses the
bench's noise-free stand-in predictor, so the figure is the refinement's own.
"""

import argparse
import json
import resource
import time

import numpy as np
import torch

import sddr_core
from sddr_core.cli.sample import sample_scene
from sddr_core.inference.pipeline import DepthPipeline
from sddr_core.inference.windows import passes
from sddr_core.predictors.exact import MapPredictor


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mode", default="one-stage", choices=("one-stage", "two-stage"))
    parser.add_argument("--preset", default="small")
    parser.add_argument("--weights")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="auto")
    args = parser.parse_args()
    if args.weights:
        refiner = sddr_core.load_refiner(args.weights, device=args.device, dtype=args.dtype)
    else:
        refiner = sddr_core.build_refiner(args.preset, device=args.device, dtype=args.dtype)
    on_gpu = refiner.device.type == "cuda"
    if args.mode == "one-stage":
        rng = np.random.default_rng(0)
        high = rng.random((2160, 3840), dtype=np.float32)
        low = rng.random((270, 480), dtype=np.float32)
        inputs = {"input": "3840x2160 high, 480x270 low",
                  "working_size": refiner.working_size(2160, 3840)}

        def run():
            return refiner.refine(low, high)
    else:
        rgb, depth = sample_scene(2160, 3840)
        pipeline = DepthPipeline(refiner, MapPredictor(1.0 / depth))
        inputs = {"input": "3840x2160 photo", "passes": passes(3)}

        def run():
            return pipeline(rgb, mode="two-stage")
    before = peak_rss_mb()
    if on_gpu:
        torch.cuda.synchronize(refiner.device)
        torch.cuda.reset_peak_memory_stats(refiner.device)
    start = time.perf_counter()
    refined = run()
    if on_gpu:
        torch.cuda.synchronize(refiner.device)
    seconds = time.perf_counter() - start
    gpu = {"gpu": torch.cuda.get_device_name(refiner.device),
           "peak_gpu_allocated_mb": round(torch.cuda.max_memory_allocated(refiner.device) / 2**20),
           "peak_gpu_reserved_mb": round(torch.cuda.max_memory_reserved(refiner.device) / 2**20),
           } if on_gpu else {}
    print(json.dumps({
        "mode": args.mode,
        "preset": args.weights or args.preset,
        "device": str(refiner.device),
        "dtype": str(refiner.dtype).removeprefix("torch."),
        **inputs,
        "output_shape": list(refined.shape),
        "seconds": round(seconds, 2),
        "peak_rss_mb_before": round(before),
        "peak_rss_mb": round(peak_rss_mb()),
        **gpu,
    }))


if __name__ == "__main__":
    main()
