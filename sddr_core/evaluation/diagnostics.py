"""The simulator's two diagnostics: how blurred a prediction's depth edges are, and how much its
relative depth drifts locally.

They score a prediction against ground truth in the units of the simulator's noise model
(normalised GT disparity), so docs/simulator.md can show that edges sharpen and local
consistency degrades as the inference resolution rises. They are evaluation, not prediction:
the predictor never imports them.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch

from ..errors import InputError
from ..maps.alignment import align_to
from ..maps.resample import resize_maps
from ..predictors.simulated import (
    NoiseParameters,
    depth_edges,
    edge_distance,
    normalised_disparity,
)

EDGE_ERROR_RADIUS = 3.0
"""Image pixels around a ground-truth edge that `edge_error` scores."""
FLAT_MARGIN = 8.0
"""Image pixels around a ground-truth edge that `local_inconsistency` leaves out, at least."""
FLAT_MARGIN_PREDICTED = 2 * NoiseParameters().edge_blur
"""...and prediction pixels: a predictor smears edges over a few of its own pixels (2σ of the
simulator's `edge_blur`), and that smear is edge error, not inconsistency."""
TILE = 32
"""Side of the image tiles in which `local_inconsistency` measures the residual's spread."""


def edge_error(prediction: np.ndarray, depth: np.ndarray, valid: np.ndarray | None = None
               ) -> float:
    """Mean |aligned prediction − GT disparity| within 3 px of a GT edge (GT range units).

    The prediction is up-sampled to the GT size and least-squares aligned (scale ≥ 0) to the
    normalised GT disparity over valid pixels. Measures how blurred or misplaced the depth
    edges are.
    """
    residual, distance, valid = _aligned_residual(prediction, depth, valid)
    near = valid & (distance <= EDGE_ERROR_RADIUS)
    if not near.any():
        warnings.warn("edge_error: the ground truth has no valid pixel near a depth edge; "
                      "returning nan", stacklevel=2)
        return float("nan")
    return float(np.abs(residual[near]).mean())


def local_inconsistency(prediction: np.ndarray, depth: np.ndarray,
                        valid: np.ndarray | None = None) -> float:
    """Mean over 32×32 tiles of the aligned residual's std on flat pixels (GT range units).

    Flat pixels are valid ones farther than 8 image pixels and 2σ of the simulator's edge blur
    in prediction pixels from any GT edge (a low-resolution prediction's edge smear reaches far
    in image pixels; it is what `edge_error` measures). A tile counts when at least half of it
    is flat. A prediction that is globally right but drifts locally scores high here; a blurred
    but consistent one low.
    """
    residual, distance, valid = _aligned_residual(prediction, depth, valid)
    pixel = max(residual.shape) / max(np.shape(prediction))  # image pixels per prediction pixel
    flat = valid & (distance > max(FLAT_MARGIN, FLAT_MARGIN_PREDICTED * pixel))
    rows, cols = (size // TILE * TILE for size in residual.shape)

    def per_tile(values: np.ndarray) -> np.ndarray:
        return values[:rows, :cols].reshape(rows // TILE, TILE, cols // TILE, TILE).sum((1, 3))

    count = per_tile(flat.astype(np.float64))
    mean = per_tile(np.where(flat, residual, 0)) / np.maximum(count, 1)
    square = per_tile(np.where(flat, residual**2, 0)) / np.maximum(count, 1)
    spread = np.sqrt(np.maximum(square - mean**2, 0))[count >= TILE * TILE / 2]
    if not spread.size:
        warnings.warn(f"local_inconsistency: no {TILE}×{TILE} tile is at least half flat "
                      "(valid and away from depth edges); returning nan", stacklevel=2)
        return float("nan")
    return float(spread.mean())


def _aligned_residual(prediction: np.ndarray, depth: np.ndarray, valid: np.ndarray | None
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(aligned prediction − GT disparity, distance to the nearest GT edge in px, valid mask)."""
    target, valid = normalised_disparity(depth, valid)
    prediction = np.asarray(prediction)
    if prediction.ndim != 2 or not np.issubdtype(prediction.dtype, np.number):
        raise InputError(f"prediction: expected a numeric H×W map, got shape "
                         f"{prediction.shape} and dtype {prediction.dtype}")
    if not np.isfinite(prediction).all():
        raise InputError(f"prediction: {int((~np.isfinite(prediction)).sum())} values are "
                         "NaN or infinite; a prediction must be finite everywhere")
    source = torch.from_numpy(prediction.astype(np.float64))[None]
    source = resize_maps(source, target.shape)
    goal = torch.from_numpy(target.astype(np.float64))[None]
    aligned = align_to(source, goal, torch.from_numpy(valid)[None], nonnegative=True)
    aligned = aligned[0].numpy()
    edges = depth_edges(target, NoiseParameters().edge_threshold)
    distance = edge_distance(edges)
    return aligned - target, distance, valid
