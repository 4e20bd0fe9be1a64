"""Depth-edge metrics: what a user sees at discontinuities, which ORD and D³R do not measure.

Boundary F1 (Depth Pro, arXiv 2410.02073 §3.2) asks whether the prediction's depth edges are
one-pixel steps where the ground truth's are; a 10-px ramp between two correctly ordered regions
fails it. The flying-pixel rate counts the pixels near a ground-truth discontinuity whose depth
floats between its two sides: the pixels that become rubber sheets or holes in a mesh.
docs/metrics.md defines both precisely.
"""

from __future__ import annotations

import math

import numpy as np

from ..errors import InputError
from .aligned import ArrayLike, aligned_prediction, boolean_mask, values

THRESHOLDS = np.linspace(1.05, 1.25, 10)
"""Boundary F1's inverse-depth ratios t; each F1 is weighted by its t (Depth Pro's setting)."""
STEP = 1.1
"""A ground-truth discontinuity: 4-neighbours whose depths differ by a factor of at least 1.1."""
REACH = 3
"""Pixels within this many px (a 7×7 window) of a discontinuity are the flying-pixel candidates;
the window's nearest and farthest ground truth are the discontinuity's two sides."""
MARGIN = 0.1
"""A floating depth is more than this fraction of the step away from each side and from the
ground truth at its pixel."""


def boundary_f1(pred: ArrayLike, gt: ArrayLike, mask: ArrayLike | None = None,
                space: str = "depth") -> float:
    """Scale-invariant boundary F1 of `pred`'s depth discontinuities against `gt`'s.

    Parameters
    ----------
    pred : (H, W) array or tensor
        Relative prediction (any scale and shift) of polarity `space` ("depth": far = large,
        "disparity": near = large); another size is resized to `gt`'s with a warning.
    gt : (H, W) array or tensor
        Ground-truth depth, valid where finite and > 0.
    mask : (H, W) bool, optional
        Restricts the valid pixels further.

    Returns
    -------
    float
        In [0, 1], higher is better; NaN when the GT has no neighbours whose inverse depths
        differ by more than 1.05.

    Raises
    ------
    InputError
        A bad argument, named.

    Notes
    -----
    `pred` is first aligned as for every other metric (`evaluate`'s least-squares fit). On
    inverse depth, a contour lies between 4-neighbours i, j where d(j) / d(i) > t; precision
    and recall against the GT's contours are averaged over the left, top, right and bottom
    directions, and F1 is averaged over 10 thresholds t from 1.05 to 1.25, weighted by t.
    No non-maximum suppression (docs/metrics.md).

    Examples
    --------
    >>> step = np.where(np.arange(8) < 4, 1.0, 2.0) * np.ones((8, 1))
    >>> boundary_f1(step * 3, step)
    1.0
    """
    return aligned_boundary_f1(*aligned_prediction(pred, gt, mask, space))


def flying_pixel_rate(pred: ArrayLike, gt: ArrayLike, mask: ArrayLike | None = None,
                      space: str = "depth") -> float:
    """Fraction of the pixels near a GT discontinuity whose aligned depth floats between its
    sides: they become rubber sheets or holes in a mesh.

    Arguments, alignment and errors as for `boundary_f1`; `flying_pixels` gives the rule.
    Returns a float in [0, 1], lower is better; NaN when the GT has no discontinuity (no
    4-neighbours whose depths differ by a factor of 1.1 or more).

    Examples
    --------
    >>> gt = np.tile([1.0, 1.0, 1.0, 1.0, 2.0, 2.0, 2.0, 2.0], (3, 1))
    >>> flying_pixel_rate(gt, gt)
    0.0
    >>> flying_pixel_rate(np.tile([1.0, 1.0, 1.0, 1.25, 1.5, 1.75, 2.0, 2.0], (3, 1)), gt)
    0.5
    """
    return aligned_flying_rate(*aligned_prediction(pred, gt, mask, space))


def flying_pixels(depth: ArrayLike, gt: ArrayLike, valid: ArrayLike | None = None
                  ) -> np.ndarray:
    """(H, W) bool: the pixels of `discontinuity_band` whose `depth` floats between the sides.

    For callers whose depth is already in the GT's units, e.g. a mesh's vertex depths (NaN where
    there is no vertex: such a pixel does not float). A candidate floats where its depth lies
    between the nearest and the farthest valid GT of its 7×7 neighbourhood, more than 10 % of
    that step away from each of them and from the GT at the pixel: so a slanted surface's own
    values and an edge misplaced by a pixel (which takes the other side's depth) do not count.
    The rate is ``flying_pixels(...).sum() / discontinuity_band(...).sum()`` over the pixels
    the caller counts.

    `depth`, `gt`: (H, W) depth in the same units; `valid` (bool, optional): the GT pixels to
    use, by default where `gt` is finite and > 0. Raises InputError naming a bad argument.
    """
    depth, gt, valid = _checked(depth, gt, valid)
    return _band_and_flying(depth, gt, valid)[1]


def discontinuity_band(gt: ArrayLike, valid: ArrayLike | None = None) -> np.ndarray:
    """(H, W) bool: the valid pixels within 3 px of a GT discontinuity, i.e. whose 7×7
    neighbourhood holds both pixels of a pair of valid 4-neighbours whose depths differ by a
    factor of 1.1 or more: the flying-pixel candidates. Arguments as for `flying_pixels`."""
    gt = values(gt, "gt")
    return _band(gt, _valid(gt, valid))


def aligned_boundary_f1(depth: np.ndarray, gt: np.ndarray, valid: np.ndarray) -> float:
    """`boundary_f1` of an aligned float64 depth (as `aligned_prediction` returns it)."""
    log_depth = np.log(np.where(valid, depth, np.nan))
    log_gt = np.log(np.where(valid, gt, np.nan))
    log_thresholds = np.log(THRESHOLDS)
    counts = []  # per direction: (predicted, ground-truth, matched) contours per threshold
    for axis in (0, 1):
        # log of inverse-depth ratios between each pixel and the next along `axis`; NaN where
        # either is invalid, so such pairs are never a contour.
        pred_ratio = -np.diff(log_depth, axis=axis).ravel()
        gt_ratio = -np.diff(log_gt, axis=axis).ravel()
        for sign in (1.0, -1.0):  # the next pixel is the nearer one, or the previous
            pred_side, gt_side = sign * pred_ratio, sign * gt_ratio
            near = (pred_side > log_thresholds[0]) | (gt_side > log_thresholds[0])
            pred_side, gt_side = pred_side[near], gt_side[near]
            counts.append([_count_above(side, log_thresholds) for side in
                           (pred_side, gt_side, np.minimum(pred_side, gt_side))])
    predicted, truth, matched = np.array(counts, np.float64).transpose(1, 0, 2)  # [3, 4, T]
    scored = truth > 0  # directions in which the GT has contours at t
    precision = np.where(scored, matched / np.maximum(predicted, 1), 0).sum(0)
    recall = np.where(scored, matched / np.maximum(truth, 1), 0).sum(0)
    directions = scored.sum(0)
    defined = directions > 0
    if not defined.any():
        return math.nan
    precision, recall = precision[defined] / directions[defined], recall[defined] / \
        directions[defined]
    total = precision + recall
    f1 = np.divide(2 * precision * recall, total, out=np.zeros_like(total), where=total > 0)
    weights = THRESHOLDS[defined]
    return float(np.sum(f1 * weights) / weights.sum())


def aligned_flying_rate(depth: np.ndarray, gt: np.ndarray, valid: np.ndarray) -> float:
    """`flying_pixel_rate` of an aligned float64 depth (as `aligned_prediction` returns it)."""
    band, flying = _band_and_flying(depth, gt, valid)
    candidates = band.sum()
    return float(flying.sum() / candidates) if candidates else math.nan


def _count_above(values_: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """How many of `values_` exceed each of the ascending `thresholds`."""
    return values_.size - np.searchsorted(np.sort(values_), thresholds, side="right")


def _band_and_flying(depth: np.ndarray, gt: np.ndarray, valid: np.ndarray
                     ) -> tuple[np.ndarray, np.ndarray]:
    band = _band(gt, valid)
    square = [(REACH, REACH)] * 2
    nearest = -_window_reduce(np.where(valid, -gt, -np.inf), square, np.maximum, -np.inf)
    farthest = _window_reduce(np.where(valid, gt, -np.inf), square, np.maximum, -np.inf)
    margin = MARGIN * (farthest - nearest)
    with np.errstate(invalid="ignore"):  # inf - inf outside the band; NaN depth
        floating = ((depth > nearest + margin) & (depth < farthest - margin)
                    & (np.abs(depth - gt) > margin))
    return band, band & floating


def _band(gt: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Valid pixels whose (2·REACH + 1)² window holds both pixels of a discontinuity."""
    band = np.zeros_like(valid)
    for axis in (0, 1):
        first = [slice(None), slice(None)]
        second = [slice(None), slice(None)]
        first[axis], second[axis] = slice(None, -1), slice(1, None)
        a, b = gt[tuple(first)], gt[tuple(second)]
        pairs = valid[tuple(first)] & valid[tuple(second)] & \
            (np.maximum(a, b) >= STEP * np.minimum(a, b))
        # A pair, indexed by its first pixel p, lies in the window around c when
        # c − REACH ≤ p ≤ c + REACH − 1 along `axis` and |p − c| ≤ REACH across it.
        reach = [(REACH, REACH), (REACH, REACH)]
        reach[axis] = (REACH, REACH - 1)
        grid = np.zeros_like(valid)  # pairs on the pixel grid; the last line has none
        grid[tuple(first)] = pairs
        band |= _window_reduce(grid, reach, np.logical_or, False)
    return band & valid


def _window_reduce(image: np.ndarray, reach: list[tuple[int, int]], combine: np.ufunc,
                   fill: float | bool) -> np.ndarray:
    """`combine` (np.maximum, np.logical_or) of `image` over [c − before, c + after] along
    each axis, with (before, after) = `reach[axis]` and `fill` beyond the borders. Separable
    shifted slices: a few passes over the map, fast at 4 Mpx."""
    for axis, (before, after) in enumerate(reach):
        widths = [(0, 0), (0, 0)]
        widths[axis] = (before, after)
        padded = np.pad(image, widths, constant_values=fill)
        size = image.shape[axis]
        window = [slice(None), slice(None)]
        for offset in range(before + after + 1):
            window[axis] = slice(offset, offset + size)
            image = padded[tuple(window)] if offset == 0 else \
                combine(image, padded[tuple(window)])
    return image


def _checked(depth: ArrayLike, gt: ArrayLike, valid: ArrayLike | None
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    depth, gt = values(depth, "depth"), values(gt, "gt")
    if depth.shape != gt.shape:
        raise InputError(f"depth is {depth.shape[0]}x{depth.shape[1]} but gt is "
                         f"{gt.shape[0]}x{gt.shape[1]}")
    return depth, gt, _valid(gt, valid)


def _valid(gt: np.ndarray, valid: ArrayLike | None) -> np.ndarray:
    """GT pixels to use: finite and > 0, and inside `valid` when given."""
    usable = np.isfinite(gt) & (gt > 0)
    return usable if valid is None else usable & boolean_mask(valid, gt.shape, "valid")
