"""Eq. 11: the resolution a high prediction is run at, for the whole image and per window.

h = mean(r̂, r) · mean|∇N_d(L)| / α · mean|∇D_{s−1}^w| / mean|∇D_{s−1}| (method.md §3.3): the
more edge detail a region holds, the higher it is predicted; an optional cap bounds a run by a
multiple of the region's own long side r (a ViT's run costs the square of its tokens).
Every map in the formula is measured as a fresh prediction of that region would be, in its own
value range, so a window is not judged smaller (and predicted coarser) just because it spans
less of the image's range.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence

import numpy as np
import torch

from ..errors import InputError
from ..maps.gradients import mean_gradient, sobel_magnitude
from ..maps.resample import resize_maps, scaled_size
from ..predictors.base import MIN_RESOLUTION
from .windows import Window

DETAIL_FACTOR_RANGE = (0.5, 2.0)
"""Clamp on the product of Eq. 11's gradient ratios, so one odd window cannot ask for a
tiny or a huge prediction."""
MAX_RESOLUTION = 2048
"""Cap on a predictor run's long side: Eq. 11 is unbounded (a 4K photo would ask for 4224 px),
and a ViT predictor's memory grows with the square of its token count (Boost caps at 3000;
the code's one-stage high is 1920; 2048 is also N_r's own `max_side`)."""
RESOLUTION_CAP: float | None = None
"""Default cap on a predictor run's long side as a multiple of the long side of the region it
predicts (the photo or a window); None: Eq. 11 alone. Decision 280's rule kept Eq. 11 uncapped:
on the development benchmark every cap tried (0.75, 1, 1.5) lost boundary F1."""


def adaptive_resolution(training_resolution: int, native_side: int, detail: float,
                        cap: float | None = RESOLUTION_CAP) -> int:
    """Eq. 11: h = mean(r̂, r) · `detail` (clamped to DETAIL_FACTOR_RANGE), not below r̂ (a
    "high" run coarser than the low one would add nothing), then at most `cap` · r (which wins
    over r̂ for a window smaller than r̂) and MAX_RESOLUTION."""
    factor = min(max(detail, DETAIL_FACTOR_RANGE[0]), DETAIL_FACTOR_RANGE[1])
    wanted = max(training_resolution, round((training_resolution + native_side) / 2 * factor))
    if cap is not None:
        wanted = min(wanted, max(MIN_RESOLUTION, round(cap * native_side)))
    return min(MAX_RESOLUTION, wanted)


def check_cap(cap: float | None) -> float | None:
    """`cap` as a float > 0 or None, or an InputError naming it."""
    if cap is None:
        return None
    if isinstance(cap, bool) or not isinstance(cap, numbers.Real) or not cap > 0 \
            or not math.isfinite(cap):
        raise InputError(f"resolution_cap: expected a number > 0 (a multiple of the region's "
                         f"own long side) or None, got {cap!r}")
    return float(cap)


def image_resolution(low: np.ndarray, training_resolution: int, native_side: int,
                     gradient_prior: float, cap: float | None = RESOLUTION_CAP) -> int:
    """Eq. 11 for the whole image (step 0): the third factor is 1, `low` is N_d(L)."""
    return adaptive_resolution(training_resolution, native_side,
                               mean_gradient(low) / gradient_prior, cap)


def window_resolutions(base: torch.Tensor, windows: Sequence[Window], training_resolution: int,
                       gradient_prior: float, cap: float | None = RESOLUTION_CAP
                       ) -> list[int]:
    """Eq. 11 for equal-sized `windows` of D_{s−1} (`base`, H×W), each capped at `cap` times
    the window's long side.

    The window's crop of D_{s−1} at r̂ stands in for N_d(L_w), saving a predictor pass; it,
    the crop at full size and the whole of D_{s−1} are each measured in their own range.
    """
    crops = torch.stack([window.crop(base) for window in windows]).float()  # [N,h,w]
    coarse = resize_maps(crops, scaled_size(*crops.shape[-2:], training_resolution))
    at_r_hat = sobel_magnitude(coarse).mean(dim=(1, 2))
    local = sobel_magnitude(crops).mean(dim=(1, 2))
    overall = sobel_magnitude(base[None].float()).mean().clamp_min(1e-12)
    details = (at_r_hat / gradient_prior * local / overall).tolist()
    native = max(windows[0].height, windows[0].width)
    return [adaptive_resolution(training_resolution, native, detail, cap) for detail in details]
