"""Per-frame simulated predictions of a clip, whose errors change from frame to frame.

A real predictor run frame by frame normalises each frame on its own (its scale and shift
jump with what enters the view) and its local errors are drawn afresh each frame: that is
what makes refined video flicker. `clip_predictions` gives each frame its own
`SimulatedPredictor` draw (ε_cons and the normalisation per frame, method.md Eq. 1) and on top
a per-run scale and shift, so the low and the high input of one frame also disagree as two
runs of a predictor do.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np

from .simulated import SimulatedPredictor


@dataclass(frozen=True)
class FrameJitter:
    """Per-run affine change of a prediction, on its [0, 1] range."""

    scale_sigma: float = 0.03
    """Std of log(scale): a run's whole map is 3 % larger or smaller, typically."""
    shift_sigma: float = 0.01
    """Std of the shift, as a fraction of the range."""


def clip_predictions(depths: Iterable[np.ndarray], seed: int, low_resolution: int = 384,
                     high_resolution: int = 1024, jitter: FrameJitter = FrameJitter()
                     ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(low, high) disparity predictions of each ground-truth depth frame, one frame at a time.

    Frame t's draws are seeded by (`seed`, t), so any frame can be regenerated alone;
    `low_resolution` is the predictor's training resolution r̂. Returns maps at their inference
    sizes, as `SimulatedPredictor.predict` does.

    Examples
    --------
    >>> depths = np.linspace(1, 3, 2 * 32 * 48).reshape(2, 32, 48)
    >>> [low.shape for low, _ in clip_predictions(depths, seed=1, low_resolution=24,
    ...                                           high_resolution=48)]
    [(16, 24), (16, 24)]
    """
    for index, depth in enumerate(depths):
        entropy = np.random.SeedSequence([seed, index])
        predictor_seed, jitter_seed = entropy.generate_state(2)
        predictor = SimulatedPredictor(depth, seed=int(predictor_seed),
                                       training_resolution=low_resolution)
        rng = np.random.default_rng(int(jitter_seed))
        yield tuple(_jittered(predictor.predict(None, resolution), rng, jitter)
                    for resolution in (low_resolution, high_resolution))


def _jittered(prediction: np.ndarray, rng: np.random.Generator, jitter: FrameJitter
              ) -> np.ndarray:
    scale = np.exp(rng.normal(0, jitter.scale_sigma))
    shift = rng.normal(0, jitter.shift_sigma)
    return (prediction * scale + shift).astype(np.float32)
