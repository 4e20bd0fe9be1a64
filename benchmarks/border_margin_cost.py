"""What the Refiner's border margin (decision 82) costs: median one-stage `refine` time with
the 8-px margin against none, interleaved in one process, with the bundled weights.

    PYTHONPATH=. python benchmarks/border_margin_cost.py [--repeats 9]

Sizes: 1024² (a multiple of the stride: the margin adds 128 px per side), 1000² (its
padding already has room) and 1152 × 2048 (a 4K photo's working size).
"""

from __future__ import annotations

import argparse
import json

import torch

import sddr_core.inference.refiner as refiner_module
from sddr_core import load_refiner
from sddr_core.cli.bench import interleaved_medians
from sddr_core.cli.sample import sample_scene
from sddr_core.predictors.simulated import SimulatedPredictor

SIZES = ((1024, 1024), (1000, 1000), (1152, 2048))


def refine_with(refiner, pixels: int, low: torch.Tensor, high: torch.Tensor):
    """A `refine` of the pair with the margin set to `pixels` for its duration."""
    def run() -> None:
        refiner_module.BORDER_MARGIN = pixels
        refiner.refine(low, high)
    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=9)
    args = parser.parse_args()
    refiner = load_refiner("default", device="cpu")
    margin = refiner_module.BORDER_MARGIN
    for height, width in SIZES:
        _, depth = sample_scene(height, width)
        predictor = SimulatedPredictor(depth)
        low = torch.from_numpy(predictor.predict(None, max(height, width) // 4))
        high = torch.from_numpy(predictor.predict(None, max(height, width)))

        with_margin, without = interleaved_medians([refine_with(refiner, margin, low, high),
                                                    refine_with(refiner, 0, low, high)],
                                                   refiner.device, args.repeats)
        refiner_module.BORDER_MARGIN = margin
        print(json.dumps({"size": [height, width], "seconds_with_margin": round(with_margin, 4),
                          "seconds_without": round(without, 4),
                          "ratio": round(with_margin / without, 3),
                          "network_input": refiner.network_input_size(height, width)}))


if __name__ == "__main__":
    main()
