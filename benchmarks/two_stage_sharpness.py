"""Does the coarse-to-fine machinery itself lose resolution? Figures for docs/two_stage.md.

N_r is replaced by a pass-through (it returns its high input, resized to the window), and the
predictor by `MapPredictor` (the exact disparity of `sample_scene`, at the asked resolution),
so every edge error below comes from the windows, Eq. 11 and the merging alone.

Run: python benchmarks/two_stage_sharpness.py
Prints one JSON object per case (1920×1080 with r̂ 384, 3840×2160 with r̂ 518):
- per step: Eq. 11 predictor resolutions (min, max) and the windows' native and N_r sizes;
- edge_error of D_s for s = 1..3 when step 0 is the exact map (it scores 0), with windows
  predicted at Eq. 11's resolutions, and at their native size (what is left is the
  machinery's own loss);
- edge_error of one-stage and of two-stage (S = 3), both from the map predictor.
"""

import json

import numpy as np
import torch

from sddr_core.cli.sample import sample_scene
from sddr_core.evaluation.diagnostics import edge_error
from sddr_core.inference.coarse_to_fine import CoarseToFine
from sddr_core.inference.refiner import build_refiner
from sddr_core.inference.windows import step_windows
from sddr_core.maps.resample import resize_maps
from sddr_core.predictors.exact import MapPredictor


class PassThrough:
    """N_r that returns its high input at `out_size`; sizes come from the real refiner."""

    def __init__(self, refiner):
        self.inner = refiner

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def refine(self, low, high, out_size=None):
        return resize_maps(torch.as_tensor(high), out_size)


class Native(MapPredictor):
    """The exact map at each window's native size, whatever resolution is asked."""

    def predict(self, image, resolution, region=None):
        height, width = (region or (0, 0, *self.depth_map.shape))[2:]
        return super().predict(image, max(8, height, width), region)


class Recording(MapPredictor):
    def __init__(self, depth_map, training_resolution):
        super().__init__(depth_map, training_resolution)
        self.calls = []

    def predict(self, image, resolution, region=None):
        self.calls.append((resolution, region))
        return super().predict(image, resolution, region)


def case(height: int, width: int, r_hat: int) -> dict:
    rgb, depth = sample_scene(height, width)
    disparity = 1.0 / depth
    refiner = PassThrough(build_refiner("small"))
    predictor = Recording(disparity, r_hat)
    one = CoarseToFine(refiner, predictor).one_stage(rgb)
    predictor.calls.clear()
    two, _ = CoarseToFine(refiner, predictor).two_stage(rgb, 3)
    steps = []
    calls = [resolution for resolution, region in predictor.calls if region is not None]
    for step in (1, 2, 3):
        windows = step_windows(height, width, step)
        these, calls = calls[:len(windows)], calls[len(windows):]
        window = windows[0]
        steps.append({"step": step, "windows": len(windows),
                      "native": [window.height, window.width],
                      "n_r_size": list(refiner.working_size(window.height, window.width)),
                      "predictor_min": min(these), "predictor_max": max(these),
                      "below_r_hat": sum(r < r_hat for r in these)})
    exact = (disparity, disparity)
    from_exact = [edge_error(CoarseToFine(refiner, predictor).two_stage(rgb, s, exact)[0], depth)
                  for s in (1, 2, 3)]
    native = Native(disparity, r_hat)
    lossless = [edge_error(CoarseToFine(refiner, native).two_stage(rgb, s, exact)[0], depth)
                for s in (1, 2, 3)]
    return {"size": [height, width], "r_hat": r_hat, "steps": steps,
            "edge_error_from_exact_D0_after_step": [round(e, 4) for e in from_exact],
            "same_with_windows_predicted_at_native_size": [round(e, 5) for e in lossless],
            "edge_error_one_stage": round(edge_error(one, depth), 4),
            "edge_error_two_stage": round(edge_error(two, depth), 4)}


if __name__ == "__main__":
    np.set_printoptions(precision=4)
    for size in ((1080, 1920, 384), (2160, 3840, 518)):
        print(json.dumps(case(*size)))
