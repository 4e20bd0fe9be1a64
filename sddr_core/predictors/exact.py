"""`MapPredictor`: a noise-free predictor of a known map, for benchmarks and tests.

It returns the asked window of the map at the asked resolution and costs almost nothing, so a
benchmark times the refinement rather than a depth network, and a test can check that the
coarse-to-fine machinery itself loses nothing (a pass-through N_r fed exact maps).
"""

from __future__ import annotations

import numpy as np
import torch

from ..maps.resample import resize_maps, scaled_size
from .base import GRADIENT_PRIOR, MIN_RESOLUTION, check_polarity, check_resolution


class MapPredictor:
    """Predicts `depth_map` (H×W, e.g. disparity of a known scene) exactly, at any resolution.

    `region` = (top, left, height, width) selects the window to predict; the image's pixels
    are not looked at. The result's long side is `resolution` (each side ≥ 8 px).
    """

    name = "map"
    gradient_prior = GRADIENT_PRIOR

    def __init__(self, depth_map: np.ndarray, training_resolution: int = 384,
                 polarity: str = "disparity"):
        self.depth_map = np.asarray(depth_map, np.float32)
        self.training_resolution = check_resolution(training_resolution)
        self.polarity = check_polarity(polarity, self.name)

    def predict(self, image, resolution: int, region=None) -> np.ndarray:
        top, left, height, width = region or (0, 0, *self.depth_map.shape)
        crop = torch.from_numpy(self.depth_map[top:top + height, left:left + width])
        size = tuple(max(MIN_RESOLUTION, side)
                     for side in scaled_size(height, width, check_resolution(resolution)))
        return resize_maps(crop[None], size)[0].numpy()
