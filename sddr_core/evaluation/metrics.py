"""The paper's evaluation (method.md §6.1): accuracy and ordinal metrics of a relative depth
prediction against ground-truth depth.

A relative prediction has no units, so it is first fitted to the GT by least-squares scale and
shift, in depth or disparity space as SDDR's official Middlebury script does, but with the scale
kept ≥ 0 so a map of inverted polarity is punished instead of flipped; every metric is then
computed in depth on the valid pixels. The ordinal metrics live in :mod:`.ordinal`;
docs/metrics.md explains each metric and setting.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch

from ..errors import InputError
from ..maps.alignment import fit_affine
from ..maps.resample import resize_maps
from .ordinal import boost_ord, d3r, ranking_ord, superpixel_points

METRIC_KEYS = ("delta1", "delta2", "delta3", "rel", "sqrel", "rmse", "log10", "ord", "d3r")
SPACES = ("depth", "disparity")
ORD_VARIANTS = ("boost", "ranking")
CLAMP_FACTOR = 10.0  # the aligned map stays within [min / 10, max · 10] of its fit target

ArrayLike = np.ndarray | torch.Tensor


def evaluate(pred: ArrayLike, gt: ArrayLike, mask: ArrayLike | None = None, space: str = "depth",
             ord_variant: str = "boost", seed: int = 0, free_sign: bool = False
             ) -> dict[str, float]:
    """All METRIC_KEYS for one image, in that order.

    `pred`: relative prediction (H×W, any scale and shift) whose polarity `space` gives: "depth"
    (far = large) or "disparity" (near = large, as MiDaS or Depth Anything). `gt`: GT depth,
    valid where finite and > 0. `mask` (bool) restricts the valid pixels further. A `pred` of
    another size is resized to `gt`'s, with a warning. `ord_variant`: "boost" (superpixel ORD)
    or "ranking" (Eq. 13). `seed` fixes the random ORD pairs. "ord" and "d3r" are NaN when the
    GT offers no usable pair (e.g. a flat GT). The fitted scale is ≥ 0, so a `pred` of the
    wrong polarity scores as badly as a constant; `free_sign=True` lets the fit flip it, as
    `np.polyfit` in SDDR's script does.
    """
    if space not in SPACES:
        raise InputError(f"space must be one of {', '.join(SPACES)}; got {space!r}")
    if ord_variant not in ORD_VARIANTS:
        raise InputError(f"ord_variant must be one of {', '.join(ORD_VARIANTS)}; "
                         f"got {ord_variant!r}")
    gt = _values(gt, "gt")
    pred = _values(pred, "pred")
    if pred.shape != gt.shape:
        warnings.warn(f"pred is {pred.shape[0]}x{pred.shape[1]} but gt is "
                      f"{gt.shape[0]}x{gt.shape[1]}; resizing pred (bilinear) to gt's size",
                      stacklevel=2)
        pred = resize_maps(torch.from_numpy(pred)[None], gt.shape)[0].numpy()
    valid = np.isfinite(gt) & (gt > 0) & np.isfinite(pred)
    if mask is not None:
        valid &= _mask(mask, gt.shape)
    if valid.sum() < 2:
        raise InputError(f"gt has {valid.sum()} valid pixel(s) (finite, > 0, with a finite pred "
                         "and inside mask); need at least 2")

    depth = aligned_depth(pred, gt, valid, space, free_sign)
    metrics = _accuracy(depth[valid], gt[valid])
    superpixels = superpixel_points(gt, valid)
    if ord_variant == "boost":
        metrics["ord"] = boost_ord(depth, gt, valid, seed, superpixels=superpixels)
    else:
        metrics["ord"] = ranking_ord(depth, gt, valid, seed)
    metrics["d3r"] = d3r(depth, gt, valid, superpixels=superpixels)
    return {key: metrics[key] for key in METRIC_KEYS}


def aligned_depth(pred: np.ndarray, gt: np.ndarray, valid: np.ndarray,
                  space: str, free_sign: bool = False) -> np.ndarray:
    """`pred` fitted to GT depth ("depth") or GT disparity ("disparity") with a scale ≥ 0
    (any sign with `free_sign`), clamped there to stay positive, returned as depth; NaN outside
    `valid` (same-size arrays, as `evaluate` checks)."""
    pred, gt = np.asarray(pred, np.float64), np.asarray(gt, np.float64)
    disparity = np.divide(1.0, gt, out=np.zeros_like(gt), where=valid)
    target = np.where(valid, gt, 0.0) if space == "depth" else disparity
    source = np.where(valid, pred, 0.0)
    scale, shift = fit_affine(*(torch.from_numpy(a)[None] for a in (source, target, valid)),
                              nonnegative=not free_sign)
    fitted = np.clip(scale.item() * source + shift.item(),
                     target[valid].min() / CLAMP_FACTOR, target[valid].max() * CLAMP_FACTOR)
    return np.where(valid, fitted if space == "depth" else 1.0 / fitted, np.nan)


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


def _plane(array: ArrayLike, name: str) -> np.ndarray:
    """`array` as a non-empty 2-D numpy array, or an InputError naming it."""
    if isinstance(array, torch.Tensor):
        array = array.detach().cpu().numpy()
    if not isinstance(array, np.ndarray):
        raise InputError(f"{name} must be a numpy array or torch tensor, "
                         f"got {type(array).__name__}")
    if array.ndim != 2 or array.size == 0:
        raise InputError(f"{name} must be a non-empty H×W array, got shape {array.shape}")
    return array


def _values(array: ArrayLike, name: str) -> np.ndarray:
    plane = _plane(array, name)
    if plane.dtype.kind not in "iuf":
        raise InputError(f"{name} must hold integer or float values, got {plane.dtype}")
    return plane.astype(np.float64)


def _mask(array: ArrayLike, shape: tuple[int, ...]) -> np.ndarray:
    plane = _plane(array, "mask")
    if plane.dtype != bool:
        raise InputError(f"mask must be boolean, got {plane.dtype} (use e.g. mask > 0)")
    if plane.shape != shape:
        raise InputError(f"mask is {plane.shape[0]}x{plane.shape[1]} but gt is "
                         f"{shape[0]}x{shape[1]}")
    return plane
