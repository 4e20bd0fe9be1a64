"""sddr: high-resolution depth refinement (Self-Distilled Depth Refinement, NeurIPS 2024).

Public API: `load_refiner`, `build_refiner`, `Refiner` (`refine`, `save`), and the errors.
The parts live in subpackages: `network` (N_r), `inference` (refiner and pipeline),
`predictors`, `files`, `evaluation`, `maps` (shared map operations), `cli`.
"""

from .errors import InputError, SddrError, WeightsError
from .inference.refiner import Refiner, build_refiner, load_refiner

__all__ = [
    "InputError",
    "Refiner",
    "SddrError",
    "WeightsError",
    "build_refiner",
    "load_refiner",
]
__version__ = "0.1.0"
