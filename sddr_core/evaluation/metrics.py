"""The paper's evaluation (method.md §6.1) and the depth-edge metrics: accuracy, ordinal and
boundary metrics of a relative depth prediction against ground-truth depth.

The prediction is first aligned to the GT (:mod:`.aligned`: least-squares scale ≥ 0 and shift,
in depth or disparity space); every metric is then computed in depth on the valid pixels. The
ordinal metrics live in :mod:`.ordinal`, the boundary metrics in :mod:`.boundaries`;
docs/metrics.md explains each metric and setting.
"""

from __future__ import annotations

import numpy as np

from ..errors import InputError
from .aligned import ArrayLike, aligned_prediction
from .boundaries import aligned_boundary_f1, aligned_flying_rate
from .ordinal import boost_ord, d3r, ranking_ord, superpixel_points

METRIC_KEYS = ("delta1", "delta2", "delta3", "rel", "sqrel", "rmse", "log10", "ord", "d3r",
               "boundary_f1", "flying")
ORD_VARIANTS = ("boost", "ranking")


def evaluate(pred: ArrayLike, gt: ArrayLike, mask: ArrayLike | None = None, space: str = "depth",
             ord_variant: str = "boost", seed: int = 0, free_sign: bool = False
             ) -> dict[str, float]:
    """All METRIC_KEYS for one image, in that order.

    `pred`: relative prediction (H×W, any scale and shift) whose polarity `space` gives: "depth"
    (far = large) or "disparity" (near = large, as MiDaS or Depth Anything). `gt`: GT depth,
    valid where finite and > 0. `mask` (bool) restricts the valid pixels further. A `pred` of
    another size is resized to `gt`'s, with a warning. `ord_variant`: "boost" (superpixel ORD)
    or "ranking" (Eq. 13). `seed` fixes the random ORD pairs. "ord", "d3r", "boundary_f1" and
    "flying" are NaN when the GT offers nothing to score them on (e.g. a flat GT). The fitted
    scale is ≥ 0, so a `pred` of the wrong polarity scores as badly as a constant;
    `free_sign=True` lets the fit flip it, as `np.polyfit` in SDDR's script does.
    """
    if ord_variant not in ORD_VARIANTS:
        raise InputError(f"ord_variant must be one of {', '.join(ORD_VARIANTS)}; "
                         f"got {ord_variant!r}")
    depth, gt, valid = aligned_prediction(pred, gt, mask, space, free_sign)
    metrics = _accuracy(depth[valid], gt[valid])
    superpixels = superpixel_points(gt, valid)
    if ord_variant == "boost":
        metrics["ord"] = boost_ord(depth, gt, valid, seed, superpixels=superpixels)
    else:
        metrics["ord"] = ranking_ord(depth, gt, valid, seed)
    metrics["d3r"] = d3r(depth, gt, valid, superpixels=superpixels)
    metrics["boundary_f1"] = aligned_boundary_f1(depth, gt, valid)
    metrics["flying"] = aligned_flying_rate(depth, gt, valid)
    return {key: metrics[key] for key in METRIC_KEYS}


def _accuracy(depth: np.ndarray, gt: np.ndarray) -> dict[str, float]:
    """δ1–δ3, REL, SqRel, RMSE and log10 over paired 1-D arrays of valid depths."""
    ratio = np.maximum(depth / gt, gt / depth)
    error = depth - gt
    metrics = {f"delta{i}": float(np.mean(ratio < 1.25**i)) for i in (1, 2, 3)}
    metrics["rel"] = float(np.mean(np.abs(error) / gt))
    metrics["sqrel"] = float(np.mean(error**2 / gt))
    metrics["rmse"] = float(np.sqrt(np.mean(error**2)))
    metrics["log10"] = float(np.mean(np.abs(np.log10(depth / gt))))
    return metrics
