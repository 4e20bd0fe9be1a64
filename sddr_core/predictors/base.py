"""The predictor contract: what SDDR needs from a monocular depth predictor N_d.

SDDR runs a frozen predictor at several inference resolutions (the whole image at r̂, windows at
the adaptive size of Eq. 11) and fuses what comes out, so it needs four things from one: a
prediction at exactly the requested resolution, its polarity, its training resolution r̂, and
the gradient prior α. `DepthPredictor` is that contract; `CallablePredictor` fits any function
to it.
"""

from __future__ import annotations

import numbers
import warnings
from collections.abc import Callable, Sequence
from typing import Protocol, runtime_checkable

import numpy as np
import torch

from ..errors import InputError

GRADIENT_PRIOR = 0.010
"""α of Eq. 11, the same for every predictor until one is measured on its own training data:
`mean_gradient` ((|Sobel_x| + |Sobel_y|)/8 per pixel, as a fraction of the map's range) of a
prediction at r̂. 0.0099 measured on the analytic scene (`tests/analytic_scene.py`, the sample
scene before decision 191), seeds 0–7, through `SimulatedPredictor` at r̂ = 384;
docs/predictors.md explains why."""
MIN_RESOLUTION = 8
POLARITIES = ("disparity", "depth")
@runtime_checkable
class DepthPredictor(Protocol):
    """A monocular depth predictor as SDDR uses it.

    `polarity` is "disparity" (near = large, MiDaS-style relative inverse depth) or "depth";
    `training_resolution` is r̂, the long side in pixels it was trained at; `gradient_prior` is
    α of Eq. 11. `predict` takes an H×W×3 uint8 RGB image (the whole image or a window of it)
    and returns a 2-D float32 map at its own inference size, whose long side is about
    `resolution` (aspect kept, unless the model takes only squares); the caller resizes it.
    `region` = (top, left, height, width) places a window inside the full image: predictors
    that see only pixels ignore it.
    """

    name: str
    polarity: str
    training_resolution: int
    gradient_prior: float

    def predict(
        self, image: np.ndarray, resolution: int,
        region: tuple[int, int, int, int] | None = None,
    ) -> np.ndarray: ...


def predict_many(predictor: DepthPredictor, images: Sequence[np.ndarray], resolution: int,
                 regions: Sequence[tuple[int, int, int, int] | None]) -> list[np.ndarray]:
    """`predictor.predict` of each of `images` (all of one size) at one `resolution`: as one
    batch when the predictor has `predict_batch(images, resolution)` (the transformers
    adapter), else one at a time with each one's region."""
    batched = getattr(predictor, "predict_batch", None)
    if batched is not None:
        return batched(images, resolution)
    return [predictor.predict(image, resolution, region=region)
            for image, region in zip(images, regions, strict=True)]


# ------------------------------------------------------------------------------------- inputs

def as_rgb(image: np.ndarray, name: str = "image") -> np.ndarray:
    """H×W×3 uint8 RGB, converting gray, RGBA, 16-bit and float [0, 1] images with a warning.

    Predictors are trained on 8-bit RGB photos; anything else is brought there rather than
    refused, and the warning says what was done.
    """
    if not isinstance(image, np.ndarray):
        raise InputError(f"{name}: expected a numpy array, got {type(image).__name__}")
    shape = image.shape
    if not (image.ndim == 2 or (image.ndim == 3 and shape[2] in (1, 3, 4))) or 0 in shape:
        raise InputError(f"{name}: expected an H×W, H×W×1, H×W×3 or H×W×4 image, "
                         f"got shape {shape}")
    notes = []
    if image.dtype == np.uint16:
        image = np.round(image / 257).astype(np.uint8)
        notes.append("16-bit values scaled to 8-bit")
    elif np.issubdtype(image.dtype, np.floating):
        low, high = float(np.min(image)), float(np.max(image))
        if not (low >= 0 and high <= 1):  # also catches NaN
            raise InputError(f"{name}: a float image must hold values in [0, 1], found "
                             f"[{low:g}, {high:g}] (convert 0–255 values with .astype(np.uint8))")
        image = np.round(image * 255).astype(np.uint8)
        notes.append("float [0, 1] values scaled to 8-bit")
    elif image.dtype != np.uint8:
        raise InputError(f"{name}: expected uint8, uint16 or float [0, 1] pixels, "
                         f"got dtype {image.dtype}")
    if image.ndim == 2 or shape[2] == 1:
        image = np.repeat(image.reshape(shape[0], shape[1], 1), 3, axis=2)
        notes.append("gray repeated to RGB")
    elif shape[2] == 4:
        image = image[..., :3]
        notes.append("alpha channel dropped")
    if notes:
        warnings.warn(f"{name}: converted to 8-bit RGB ({', '.join(notes)})", stacklevel=2)
    return np.ascontiguousarray(image)


def check_resolution(resolution: int) -> int:
    """`resolution` as an int long side ≥ MIN_RESOLUTION, or an InputError naming it."""
    if (not isinstance(resolution, numbers.Integral) or isinstance(resolution, bool)
            or resolution < MIN_RESOLUTION):
        raise InputError(f"resolution: expected an integer long side ≥ {MIN_RESOLUTION} px, "
                         f"got {resolution!r}")
    return int(resolution)


def check_polarity(polarity: str, name: str) -> str:
    if polarity not in POLARITIES:
        raise InputError(f"predictor {name!r}: polarity must be one of {', '.join(POLARITIES)}, "
                         f"got {polarity!r}")
    return polarity


# --------------------------------------------------------------------------------- adapters

class CallablePredictor:
    """Any `fn(image, resolution) -> depth` as a DepthPredictor.

    `fn` gets H×W×3 uint8 RGB and the long side to run at; it may return a numpy array or a
    torch tensor with singleton axes (1×H×W, H×W×1…), squeezed here to one H×W float32 map.
    """

    def __init__(
        self,
        fn: Callable[[np.ndarray, int], np.ndarray | torch.Tensor],
        polarity: str = "disparity",
        training_resolution: int = 384,
        gradient_prior: float = GRADIENT_PRIOR,
        name: str = "callable",
    ) -> None:
        if not callable(fn):
            raise InputError(f"predictor {name!r}: expected a callable fn(image, resolution), "
                             f"got {type(fn).__name__}")
        if (not isinstance(training_resolution, numbers.Integral)
                or isinstance(training_resolution, bool) or training_resolution < 1):
            raise InputError(f"predictor {name!r}: training_resolution must be a positive "
                             f"integer, got {training_resolution!r}")
        if not (isinstance(gradient_prior, numbers.Real) and gradient_prior > 0):
            raise InputError(f"predictor {name!r}: gradient_prior must be a positive number, "
                             f"got {gradient_prior!r}")
        self.fn = fn
        self.name = name
        self.polarity = check_polarity(polarity, name)
        self.training_resolution = int(training_resolution)
        self.gradient_prior = float(gradient_prior)

    def predict(
        self, image: np.ndarray, resolution: int,
        region: tuple[int, int, int, int] | None = None,
    ) -> np.ndarray:
        """`fn`'s map for `image` at `resolution` (`region` is not passed on)."""
        output = self.fn(as_rgb(image), check_resolution(resolution))
        if isinstance(output, torch.Tensor):
            output = output.detach().cpu().numpy()
        if not isinstance(output, np.ndarray):
            raise InputError(f"predictor {self.name!r} returned {type(output).__name__}; "
                             "expected a numpy array or torch tensor")
        depth = output.squeeze()
        if depth.ndim != 2 or depth.dtype == np.bool_ or not (
                np.issubdtype(depth.dtype, np.integer) or np.issubdtype(depth.dtype, np.floating)):
            raise InputError(f"predictor {self.name!r} returned shape {output.shape} and dtype "
                             f"{output.dtype}; expected one real-valued H×W map")
        return depth.astype(np.float32)
