"""Cost of one G_S label refresh: `edge_labels` on a batch of training samples.

Run: python benchmarks/label_refresh.py [--samples 8] [--size 512] [--preset small]
Prints one JSON line per S (2 and 3): seconds for the batch (the second call: the first one
also sets up the CPU kernels for new batch shapes, reported apart), with every prediction
taken from a cache (as a training data pipeline supplies them), so the figure is N_r and the label
machinery alone; and, timed right after it, one one-stage `refine` of a size² pair, so the
refresh can be read in one-stage passes on a busy machine too.
"""

import argparse
import json
import time

import numpy as np
import torch

from sddr_core.cli.sample import sample_scene
from sddr_core.inference.labels import LabelSample, edge_labels
from sddr_core.inference.refiner import build_refiner
from sddr_core.predictors.exact import MapPredictor


class Caching(MapPredictor):
    def __init__(self, depth_map, training_resolution):
        super().__init__(depth_map, training_resolution)
        self.outputs = []

    def predict(self, image, resolution, region=None):
        self.outputs.append(super().predict(image, resolution, region))
        return self.outputs[-1]


def cached_sample(seed: int, size: int, steps: int, network) -> LabelSample:
    """A sample whose predictions were made once (at Eq. 11's resolutions) and kept."""
    rgb, depth = sample_scene(size, size, seed=seed)
    predictor = Caching((1.0 / depth).astype(np.float32), 384)
    edge_labels(network, [LabelSample(image=rgb)], steps, predictor)
    low, high, *windows = predictor.outputs
    cache, start = [], 0
    for step in range(1, steps + 1):
        cache.append(windows[start:start + (step + 1) ** 2])
        start += (step + 1) ** 2
    return LabelSample(low, high, cache, size=(size, size))


def _seconds(fn, *args) -> float:
    start = time.perf_counter()
    fn(*args)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--samples", type=int, default=8)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--preset", default="small")
    args = parser.parse_args()
    refiner = build_refiner(args.preset)
    network = refiner.network.train()
    for steps in (2, 3):
        samples = [cached_sample(seed, args.size, steps, network) for seed in range(args.samples)]
        cold = _seconds(edge_labels, network, samples, steps)  # new batch shapes
        seconds = _seconds(edge_labels, network, samples, steps)
        one_stage = _seconds(refiner.refine, samples[0].low, samples[0].high,
                             (args.size, args.size))
        print(json.dumps({"samples": args.samples, "size": args.size, "steps": steps,
                          "preset": args.preset, "threads": torch.get_num_threads(),
                          "seconds": round(seconds, 2), "first_call_seconds": round(cold, 2),
                          "seconds_per_sample": round(seconds / args.samples, 2),
                          "one_stage_seconds": round(one_stage, 3),
                          "in_one_stage_passes": round(seconds / one_stage, 1)}))


if __name__ == "__main__":
    main()
