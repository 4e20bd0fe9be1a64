"""Errors beyond the simulator's, added to each prediction so N_r does not learn one simulator.

`SimulatedPredictor` gives ε_cons and ε_edge only (method.md §8). Real predictors also misplace
edges by a few pixels, drift smoothly in scale across the image and leave holes and speckle
(issue 9); a model trained on the simulator alone learns to undo its blur and nothing else.
Each function here adds one of those errors to an (H, W) float32 prediction: pure, seeded by
the `np.random.Generator` passed in, shape and dtype kept, and the identity at strength 0.
`degrade` applies a random subset with strengths drawn from a `DegradationConfig`; apply it to
the low- and the high-resolution prediction separately, as their errors are independent.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch

from sddr_core.maps.resample import resize_maps
from training.config import DegradationConfig

FIELD_POINTS = 5
"""Random values per side of the smooth fields, at the centres of a 5 × 5 grid of cells over
the image and interpolated bilinearly between: a field changes over a fifth of the image, as
a predictor's drift does, and its slope is at most 2 / (side / 5) per pixel, so a
displacement below side / 10 pixels cannot fold the image over itself."""
HOLE_SIGMA = 4.0
"""σ, in pixels, of the noise whose highest values become holes: blobs a few pixels to tens of
pixels across, like the holes of a predictor on glass or sky, rather than lone pixels."""
APPLY_PROBABILITY = 0.5
"""Chance that `degrade` applies each kind of error to a map, so every subset occurs."""


def smooth_field(shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """An (H, W) float32 field in [−1, 1] that varies over about 1 / `FIELD_POINTS` of the image.

    Uniform values on a FIELD_POINTS² grid, upsampled bilinearly (`resize_maps`): each pixel is
    a convex combination of grid values, so the bound [−1, 1] holds everywhere.
    """
    grid = rng.uniform(-1.0, 1.0, size=(FIELD_POINTS, FIELD_POINTS)).astype(np.float32)
    field = resize_maps(torch.from_numpy(grid)[None], shape)[0].numpy()
    return np.clip(field, -1.0, 1.0)  # against float rounding at the bounds


def misplace_edges(depth: np.ndarray, rng: np.random.Generator,
                   max_shift_px: float) -> np.ndarray:
    """`depth` resampled through a smooth random displacement of at most `max_shift_px` pixels.

    Each output pixel x takes the (bilinearly interpolated) value at x + d(x), with |d(x)| ≤
    `max_shift_px` (Euclidean), so every edge moves by at most that much and by about the same
    amount along its length, as a predictor's misplaced object boundaries do. Range: 0 (the
    identity) to a few pixels, below a tenth of the map's shorter side so the mapping stays
    one-to-one (`FIELD_POINTS`). Borders replicate.
    """
    if max_shift_px < 0:
        raise ValueError(f"max_shift_px must be ≥ 0, got {max_shift_px}")
    if max_shift_px == 0:
        return depth.copy()
    height, width = depth.shape
    dx, dy = smooth_field((height, width), rng), smooth_field((height, width), rng)
    # Shrink vectors longer than 1 so the Euclidean length, not each component, is bounded.
    length = np.maximum(np.hypot(dx, dy), 1.0)
    rows, cols = np.mgrid[0:height, 0:width].astype(np.float32)
    map_x = cols + max_shift_px * dx / length
    map_y = rows + max_shift_px * dy / length
    return cv2.remap(depth, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def scale_drift(depth: np.ndarray, rng: np.random.Generator, strength: float) -> np.ndarray:
    """`depth` times a smooth factor in [1 − `strength`, 1 + `strength`] that varies across it.

    A predictor's scale is not one number per image: far walls come out relatively too near
    on one side and too far on the other. Multiplying the prediction (disparity from the
    simulated predictor) by a low-frequency field models that while keeping the map's sign.
    Range: 0 (the identity) to below 1; the default config's 0.1 is a 10 % drift.
    """
    if not 0 <= strength < 1:
        raise ValueError(f"strength must be in [0, 1), got {strength}")
    if strength == 0:
        return depth.copy()
    factor = 1.0 + strength * smooth_field(depth.shape, rng)
    return (depth * factor).astype(np.float32)


def holes_and_speckle(depth: np.ndarray, rng: np.random.Generator, hole_fraction: float,
                      speckle_fraction: float) -> np.ndarray:
    """`depth` with NaN blobs on `hole_fraction` of its pixels and wrong values on
    `speckle_fraction` of them (each rounded to whole pixels; speckle under a hole is lost).

    Holes are the highest values of Gaussian-smoothed noise (σ = `HOLE_SIGMA`), so they come
    as blobs; speckle pixels are scattered uniformly and take values drawn uniformly from the
    map's range widened by its span on each side, so some are plausible and some extreme. N_r's
    input handling fills NaN from the nearest valid pixel (`sddr_core.maps.inputs.as_depth_batch`)
    and clips the 0.1 % extremes at each end (`sddr_core.maps.normalise.normalise_maps`): speckle
    beyond that fraction stays in N_r's input, which is the point of training on it. Ranges:
    fractions in [0, 1), a percent or so at most; (0, 0) is the identity.
    """
    for name, fraction in (("hole_fraction", hole_fraction),
                           ("speckle_fraction", speckle_fraction)):
        if not 0 <= fraction < 1:
            raise ValueError(f"{name} must be in [0, 1), got {fraction}")
    out = depth.copy()
    flat = out.reshape(-1)  # a view: writes go to `out`
    speckles = round(speckle_fraction * flat.size)
    if speckles:
        low, high = float(np.nanmin(depth)), float(np.nanmax(depth))
        span = max(high - low, 1e-6)
        where = rng.choice(flat.size, size=speckles, replace=False)
        flat[where] = rng.uniform(low - span, high + span, size=speckles)
    holes = round(hole_fraction * flat.size)
    if holes:
        noise = rng.standard_normal(depth.shape).astype(np.float32)
        noise = cv2.GaussianBlur(noise, (0, 0), HOLE_SIGMA).reshape(-1)
        flat[np.argpartition(noise, flat.size - holes)[flat.size - holes:]] = np.nan
    return out


def degrade(depth: np.ndarray, rng: np.random.Generator,
            settings: DegradationConfig) -> np.ndarray:
    """`depth` with a random subset of the errors above, each at a random strength.

    Each kind is applied with probability `APPLY_PROBABILITY`, at a strength drawn uniformly
    from [0, its maximum in `settings`]: `edge_shift` pixels, `scale_drift`, and `holes`, the
    fraction lost to holes and speckle together, split between them at random. Holes come
    last, as a predictor's missing pixels do not move or scale. `settings.edge_shift` is in
    pixels of `depth` itself; `settings.scale_drift` must be below 1 (`scale_drift`).
    """
    out = depth
    if rng.random() < APPLY_PROBABILITY:
        out = misplace_edges(out, rng, rng.uniform(0, settings.edge_shift))
    if rng.random() < APPLY_PROBABILITY:
        out = scale_drift(out, rng, rng.uniform(0, settings.scale_drift))
    if rng.random() < APPLY_PROBABILITY:
        lost = rng.uniform(0, settings.holes)
        share = rng.random()
        out = holes_and_speckle(out, rng, lost * (1 - share), lost * share)
    return out if out is not depth else depth.copy()
