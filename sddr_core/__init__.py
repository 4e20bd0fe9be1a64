"""sddr: high-resolution depth refinement (Self-Distilled Depth Refinement, NeurIPS 2024).

Public API: `load_refiner`, `build_refiner`, `Refiner` (`refine`, `save`), `PRESETS`.
"""

from .config import PRESETS, NetworkConfig
from .errors import InputError, SddrError, WeightsError
from .refiner import Refiner, build_refiner, load_refiner

__all__ = [
    "PRESETS",
    "InputError",
    "NetworkConfig",
    "Refiner",
    "SddrError",
    "WeightsError",
    "build_refiner",
    "load_refiner",
]
__version__ = "0.1.0"
