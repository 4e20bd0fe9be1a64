"""Does a refiner do harm? Two checks of issue 10 on held-out procedural scenes.

    PYTHONPATH=. python benchmarks/no_harm.py WEIGHTS [--scenes 8] [--size 480x640]

WEIGHTS: a weights file, "default", or a training checkpoint (its model weights).
1. Clean copies: low = high = the exact normalised disparity. A refiner that invents nothing
   returns it: reported are the mean and the 99th percentile of |output − input| (both in
   [0, 1] units, after `Refiner`'s fit onto the low input), the share of pixels whose
   gradient grew by more than 0.02 per pixel (invented edges), and the output's REL: the
   refiner's own error floor, to read check 2 against.
2. A high input with a smooth global distortion (the exact map times 1 + 0.3·f, f a smooth
   field in [−1, 1], `training.data.degrade.smooth_field`) and a low input that is the exact
   map at 384 px: the low input's structure should win. Reported is REL (`evaluate`) of the
   low and high inputs and of the output; the output should sit near the low input's REL,
   far from the high input's.
Seeds are the validation's held-out ones (from 1,000,000); nothing here trains or tunes.
"""

from __future__ import annotations

import argparse
import json
import statistics

import numpy as np
import torch

from sddr_core.evaluation.baselines import resize_prediction
from sddr_core.evaluation.metrics import evaluate
from sddr_core.inference.refiner import Refiner
from sddr_core.maps.gradients import sobel_magnitude
from sddr_core.maps.resample import scaled_size
from sddr_core.predictors.simulated import normalised_disparity
from training.checkpoint import load_trained
from training.data.degrade import smooth_field
from training.data.scenes import render_scene

FIRST_SEED = 1_000_000
EDGE_GROWTH = 0.02


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("weights")
    parser.add_argument("--scenes", type=int, default=8)
    parser.add_argument("--size", default="480x640", help="HxW of the scenes")
    args = parser.parse_args()
    height, width = (int(v) for v in args.size.split("x"))
    refiner = Refiner(load_trained(args.weights), device="cpu", dtype="fp32")
    copies, distortion = [], []
    for seed in range(FIRST_SEED, FIRST_SEED + args.scenes):
        scene = render_scene(seed, height, width)
        exact, _ = normalised_disparity(scene.depth, scene.valid)
        exact = exact.astype(np.float32)
        out = refiner.refine(exact, exact)
        change = np.abs(out - exact)
        grown = (sobel_magnitude(_tensor(out)) - sobel_magnitude(_tensor(exact))).numpy()
        copies.append({"mean": float(change.mean()), "p99": float(np.quantile(change, 0.99)),
                       "edges_invented": float((grown > EDGE_GROWTH).mean()),
                       "rel": evaluate(out, scene.depth, scene.valid, space="disparity")["rel"]})
        rng = np.random.default_rng(seed)
        high = exact * (1 + 0.3 * smooth_field(exact.shape, rng))
        low = resize_prediction(resize_prediction(exact, scaled_size(*exact.shape, 384)),
                                exact.shape)
        out = refiner.refine(low, high)
        distortion.append({name: evaluate(m, scene.depth, scene.valid, space="disparity")["rel"]
                           for name, m in (("low", low), ("high", high), ("output", out))})
    print(json.dumps({"weights": args.weights, "scenes": args.scenes, "size": [height, width],
                      "clean_copies": _medians(copies),
                      "distorted_high_rel": _medians(distortion)}))


def _tensor(depth: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(depth))[None]


def _medians(rows: list[dict]) -> dict[str, float]:
    return {key: round(statistics.median(row[key] for row in rows), 5) for key in rows[0]}


if __name__ == "__main__":
    main()
