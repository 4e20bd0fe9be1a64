"""The low- and high-resolution predictions N_r is trained on, made from a scene's ground truth.

The simulated predictor (method.md §8: ε_cons and ε_edge) is drawn with its own resolutions,
noise scale and edge blur per scene, and `degrade` adds the errors it lacks (misplaced edges,
scale drift, holes and speckle), so N_r meets a wide range of predictors rather than one
(issue 9). Both maps are then filled where holes left NaN (as `sddr_core`'s input handling
does) and resampled onto the ground truth's grid, so a training crop is the same window of
target and inputs; they stay disparity-like, the simulator's polarity.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import torch

from sddr_core.maps.inputs import nearest_fill
from sddr_core.maps.resample import resize_maps
from sddr_core.predictors.simulated import NoiseParameters, SimulatedPredictor
from training.config import DegradationConfig
from training.data.degrade import degrade


@dataclass(frozen=True)
class PredictorDraw:
    """The simulated predictor one scene is seen through, drawn from a `DegradationConfig`."""

    seed: int
    low_resolution: int
    high_resolution: int
    noise_scale: float
    edge_blur: float

    def predictor(self, depth: np.ndarray, valid: np.ndarray) -> SimulatedPredictor:
        """The simulator on this ground truth; it also predicts the label windows (phase 2)."""
        base = NoiseParameters()
        noise = dataclasses.replace(base, scale_sigma=base.scale_sigma * self.noise_scale,
                                    shift_sigma=base.shift_sigma * self.noise_scale,
                                    edge_blur=self.edge_blur)
        return SimulatedPredictor(depth, valid, seed=self.seed, noise=noise)


def draw_predictor(rng: np.random.Generator, settings: DegradationConfig) -> PredictorDraw:
    """Resolutions, noise scale and edge blur, each uniform in its `settings` range."""
    return PredictorDraw(
        seed=int(rng.integers(2**31)),
        low_resolution=int(rng.integers(settings.low_resolution[0],
                                        settings.low_resolution[1] + 1)),
        high_resolution=int(rng.integers(settings.high_resolution[0],
                                         settings.high_resolution[1] + 1)),
        noise_scale=float(rng.uniform(*settings.noise_scale)),
        edge_blur=float(rng.uniform(*settings.edge_blur)),
    )


def make_predictions(depth: np.ndarray, valid: np.ndarray, draw: PredictorDraw,
                     rng: np.random.Generator, settings: DegradationConfig
                     ) -> tuple[np.ndarray, np.ndarray]:
    """(low, high): float32 maps on `depth`'s grid, degraded independently and hole-filled."""
    predictor = draw.predictor(depth, valid)
    return (degraded_prediction(predictor, draw.low_resolution, rng, settings, depth.shape),
            degraded_prediction(predictor, draw.high_resolution, rng,
                                settings.for_high_input(), depth.shape))


def degraded_prediction(predictor: SimulatedPredictor, resolution: int,
                        rng: np.random.Generator, settings: DegradationConfig,
                        shape: tuple[int, int],
                        region: tuple[int, int, int, int] | None = None) -> np.ndarray:
    """One simulated prediction (of the whole scene, or of `region` as a predictor shown only
    that crop) with `degrade`'s errors drawn from `settings`, hole-filled and resized to
    `shape`: how every training input is made, the label windows' included."""
    prediction = predictor.predict(None, resolution, region=region)
    return on_grid(degrade(prediction, rng, settings), shape)


def on_grid(prediction: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """`prediction` with NaN holes filled from the nearest valid pixel, resized to `shape`."""
    values = torch.from_numpy(prediction)
    finite = torch.isfinite(values)
    if not bool(finite.all()):
        values = nearest_fill(values, finite)
    return resize_maps(values[None], shape)[0].numpy()
