"""The robust value range of a depth map: one rule for sddr's network inputs and the Blender
add-on's relative depth.

Plain min-max would let one extreme pixel (a hole, a reflection, a sky value far off the scale:
real predictors make them) squash the rest of a relative map into a sliver of its range, so the
range is taken between order statistics that leave out OUTLIER_FRACTION of the pixels at each
end (docs/decisions.md 181).

numpy and the standard library only, no package imports: the Blender add-on ships an identical
copy (`blender_addon/robust_range.py`, kept identical by tests/test_depth_meaning.py), since
Blender's Python has no torch. `sddr_core.maps.normalise.robust_range` is the same rule on
batches of tensors, pinned to this one by tests.
"""

from __future__ import annotations

import math

import numpy as np

OUTLIER_FRACTION = 0.001
"""Fraction of pixels at each end of a map's value range that may be clipped as outliers."""
SAMPLE_PIXELS = 1 << 16
"""Larger maps take their order statistics from an even subsample of about this many pixels:
the 0.1% tail is still 65 pixels, and the cost stops growing with the map (exact quantiles of
a 2048² map took a fifth of a `small` refine)."""


def sample_stride(pixels: int, width: int) -> int:
    """Step through a flattened map of `pixels` pixels, `width` per row, that samples about
    SAMPLE_PIXELS of them and every column equally: a step sharing a factor with the width
    would sample only some columns (1024² → every 16th), so a thin pole between them would be
    missing from the quantiles (and clipped as if it were an outlier)."""
    stride = max(1, pixels // SAMPLE_PIXELS)
    while math.gcd(stride, width) != 1:
        stride += 1
    return stride


def robust_range(depth: np.ndarray, fraction: float = OUTLIER_FRACTION) -> tuple[float, float]:
    """(low, high) of an H×W map: the `fraction` and 1 − `fraction` order statistics of its
    finite values (of every pixel, or of the even subsample `sample_stride` takes past
    SAMPLE_PIXELS), or its finite min and max where those coincide (a map that is mostly one
    value) or where it has fewer than 1 / `fraction` values.

    Raises ValueError when the map is not 2-D or the sample holds no finite value.

    >>> robust_range(np.arange(2000.0).reshape(40, 50))
    (1.0, 1998.0)
    """
    depth = np.asarray(depth)
    if depth.ndim != 2:
        raise ValueError(f"depth map: expected a 2-D array, got shape {depth.shape}")
    flat = depth.astype(np.float64).ravel()[:: sample_stride(depth.size, depth.shape[1])]
    flat = flat[np.isfinite(flat)]
    if flat.size == 0:
        raise ValueError("depth map has no finite value (all NaN or infinite)")
    count = flat.size
    skip = int(fraction * (count - 1))
    ends = np.partition(flat, (skip, count - 1 - skip))
    low, high = ends[skip], ends[count - 1 - skip]
    if high <= low:
        low, high = flat.min(), flat.max()
    return float(low), float(high)
