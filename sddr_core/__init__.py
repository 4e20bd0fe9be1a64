"""sddr: high-resolution depth refinement (Self-Distilled Depth Refinement, NeurIPS 2024).

Public API: `Refiner` (one pass of N_r on a low/high pair), `DepthPipeline` (photo → refined
depth, one- or two-stage, over a refiner and a depth predictor), `load_refiner`,
`build_refiner`, and the errors.
The parts live in subpackages: `network` (N_r), `inference` (refiner and pipeline),
`predictors`, `files`, `evaluation`, `maps` (shared map operations), `cli`.
"""

from .errors import InputError, SddrError, WeightsError
from .files import depth_io  # noqa: F401  (before the rest: it sets up OpenCV before cv2 loads)
from .inference.pipeline import DepthPipeline
from .inference.refiner import Refiner, build_refiner, load_refiner

__all__ = [
    "DepthPipeline",
    "InputError",
    "Refiner",
    "SddrError",
    "WeightsError",
    "build_refiner",
    "load_refiner",
]
__version__ = "0.1.0"
