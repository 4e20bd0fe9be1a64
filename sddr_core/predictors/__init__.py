"""Monocular depth predictors N_d: the contract the refinement calls, and its implementations.

- `base`: the `DepthPredictor` protocol and `CallablePredictor` for plain functions;
- `huggingface`: Depth Anything V2, DPT and ZoeDepth at pinned revisions, `load_predictor`, and
  what a host needs to say when their weights are missing (`cached_weights`, `fetch_command`);
- `simulated`: the paper's noise model applied to ground truth, for evaluation and training.
"""

from .base import GRADIENT_PRIOR, CallablePredictor, DepthPredictor, as_rgb
from .huggingface import (
    PREDICTORS,
    MissingWeightsError,
    cached_weights,
    fetch_command,
    load_predictor,
)
from .simulated import SimulatedPredictor

__all__ = [
    "GRADIENT_PRIOR",
    "PREDICTORS",
    "CallablePredictor",
    "DepthPredictor",
    "MissingWeightsError",
    "SimulatedPredictor",
    "as_rgb",
    "cached_weights",
    "fetch_command",
    "load_predictor",
]
