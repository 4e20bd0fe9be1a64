"""A relative prediction made comparable with ground-truth depth, as every metric needs it.

A relative prediction has no units, so it is fitted to the GT by least-squares scale and shift,
in depth or disparity space as SDDR's official Middlebury script does, but with the scale kept
≥ 0 so a map of inverted polarity is punished instead of flipped. The accuracy, ordinal and
boundary metrics (:mod:`.metrics`, :mod:`.boundaries`) all score this one aligned depth.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch

from ..errors import InputError
from ..maps.alignment import fit_affine
from ..maps.resample import resize_maps

SPACES = ("depth", "disparity")
CLAMP_FACTOR = 10.0  # the aligned map stays within [min / 10, max · 10] of its fit target

ArrayLike = np.ndarray | torch.Tensor


def aligned_prediction(pred: ArrayLike, gt: ArrayLike, mask: ArrayLike | None = None,
                       space: str = "depth", free_sign: bool = False
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(aligned depth, GT depth, valid pixels), float64 H×W, from a metric's raw arguments.

    Checks the arguments (InputError naming the bad one), resizes a `pred` of another size to
    `gt`'s with a warning, and keeps the pixels where `gt` is finite and > 0, `pred` finite and
    `mask` true; fewer than 2 is an error. The aligned depth is NaN outside them.
    """
    if space not in SPACES:
        raise InputError(f"space must be one of {', '.join(SPACES)}; got {space!r}")
    gt = values(gt, "gt")
    pred = values(pred, "pred")
    if pred.shape != gt.shape:
        warnings.warn(f"pred is {pred.shape[0]}x{pred.shape[1]} but gt is "
                      f"{gt.shape[0]}x{gt.shape[1]}; resizing pred (bilinear) to gt's size",
                      stacklevel=3)
        pred = resize_maps(torch.from_numpy(pred)[None], gt.shape)[0].numpy()
    valid = np.isfinite(gt) & (gt > 0) & np.isfinite(pred)
    if mask is not None:
        valid &= boolean_mask(mask, gt.shape)
    if valid.sum() < 2:
        raise InputError(f"gt has {valid.sum()} valid pixel(s) (finite, > 0, with a finite pred "
                         "and inside mask); need at least 2")
    return aligned_depth(pred, gt, valid, space, free_sign), gt, valid


def aligned_depth(pred: np.ndarray, gt: np.ndarray, valid: np.ndarray,
                  space: str, free_sign: bool = False) -> np.ndarray:
    """`pred` fitted to GT depth ("depth") or GT disparity ("disparity") with a scale ≥ 0
    (any sign with `free_sign`), clamped there to stay positive, returned as depth; NaN outside
    `valid` (same-size arrays, as `aligned_prediction` checks)."""
    pred, gt = np.asarray(pred, np.float64), np.asarray(gt, np.float64)
    disparity = np.divide(1.0, gt, out=np.zeros_like(gt), where=valid)
    target = np.where(valid, gt, 0.0) if space == "depth" else disparity
    source = np.where(valid, pred, 0.0)
    scale, shift = fit_affine(*(torch.from_numpy(a)[None] for a in (source, target, valid)),
                              nonnegative=not free_sign)
    fitted = np.clip(scale.item() * source + shift.item(),
                     target[valid].min() / CLAMP_FACTOR, target[valid].max() * CLAMP_FACTOR)
    return np.where(valid, fitted if space == "depth" else 1.0 / fitted, np.nan)


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


def values(array: ArrayLike, name: str) -> np.ndarray:
    """`array` as a float64 H×W numpy array, or an InputError naming it."""
    checked = _plane(array, name)
    if checked.dtype.kind not in "iuf":
        raise InputError(f"{name} must hold integer or float values, got {checked.dtype}")
    return checked.astype(np.float64)


def boolean_mask(array: ArrayLike, shape: tuple[int, ...], name: str = "mask") -> np.ndarray:
    """`array` as a boolean H×W numpy array of `shape`, or an InputError naming it."""
    checked = _plane(array, name)
    if checked.dtype != bool:
        raise InputError(f"{name} must be boolean, got {checked.dtype} (use e.g. {name} > 0)")
    if checked.shape != shape:
        raise InputError(f"{name} is {checked.shape[0]}x{checked.shape[1]} but gt is "
                         f"{shape[0]}x{shape[1]}")
    return checked
