"""Cost of each training degradation on simulated predictions of one procedural scene (768×1024,
seed 3) at 384 and 1536 px, mean over 10 seeds; and a check that a degraded map comes out finite
and in [0, 1] after the refiner's own input handling.

Run from the repository root: PYTHONPATH=. python benchmarks/degrade_cost.py
"""

import time
import warnings

import numpy as np
import torch

from sddr_core.maps.inputs import as_depth_batch
from sddr_core.maps.normalise import normalise_maps
from sddr_core.predictors.simulated import SimulatedPredictor
from sddr_core.scenes import render_scene
from training.config import DegradationConfig
from training.data.degrade import degrade, holes_and_speckle, misplace_edges, scale_drift

SEEDS = 10


def main() -> None:
    scene = render_scene(3, 768, 1024)
    predictor = SimulatedPredictor(scene.depth, seed=3)
    image = np.zeros((768, 1024, 3), np.uint8)
    settings = DegradationConfig()
    for resolution in (384, 1536):
        prediction = predictor.predict(image, resolution)
        print(f"prediction at {resolution} px: {prediction.shape}")
        cases = {  # name: (function, its arguments after the map and the generator)
            "misplace_edges (3 px)": (misplace_edges, (3.0,)),
            "scale_drift (0.1)": (scale_drift, (0.1,)),
            "holes_and_speckle (0.5% + 0.5%)": (holes_and_speckle, (0.005, 0.005)),
            "degrade (default config)": (degrade, (settings,)),
        }
        for name, (function, arguments) in cases.items():
            start = time.perf_counter()
            for seed in range(SEEDS):
                function(prediction, np.random.default_rng(seed), *arguments)
            print(f"  {name}: {1000 * (time.perf_counter() - start) / SEEDS:.1f} ms a map")
        spoiled = holes_and_speckle(prediction, np.random.default_rng(0), 0.005, 0.005)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the NaN-fill warning
            normalised = normalise_maps(as_depth_batch(spoiled, "low", torch.device("cpu")))
        print(f"  after the input handling: finite {bool(torch.isfinite(normalised).all())}, "
              f"range [{float(normalised.min()):g}, {float(normalised.max()):g}]")


if __name__ == "__main__":
    main()
