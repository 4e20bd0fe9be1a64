"""Depth-edge metrics: what a user sees at discontinuities, which ORD and D³R do not measure.

Boundary F1 (Depth Pro, arXiv 2410.02073 §3.2) asks whether the prediction's depth edges are
one-pixel steps where the ground truth's are; a 10-px ramp between two correctly ordered regions
fails it. The flying-pixel rate counts the pixels near a ground-truth discontinuity whose depth
floats between the two sides the prediction gives it there: the pixels that become rubber
sheets or holes in a mesh.
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
the window's pixels split into the discontinuity's near and far side by their ground truth."""
MARGIN = 0.1
"""A floating depth is more than this fraction of the predicted step away from each predicted
side and from where its own ground truth puts it between them."""
SEPARATION = 3.0
"""Predicted sides whose medians differ by no more than this many standard errors (from their
pixels' spread) are merged: nothing floats between them."""
WINDOW = (2 * REACH + 1) ** 2
CHUNK = 65536
"""Candidates whose windows are gathered at once: [CHUNK, 49] float64 arrays, 25 MB each."""


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
    there is no vertex: such a pixel does not float, and sets no side). The sides are the
    prediction's own, local to each candidate: the medians of `depth` over the pixels of its
    7×7 window whose GT lies on the near and on the far side of the window's step. A candidate
    floats where its depth lies between them, more than 10 % of their difference away from
    each and from where its own GT puts it between them. So a smooth error, which moves a
    side with its pixels, a slanted surface's own values and an edge misplaced by a pixel
    (which takes the other side's depth) do not count, and nothing floats between sides the
    prediction reversed or merged (medians no more than 3 standard errors apart, from their
    pixels' spread: noise on a flat map). The rate is
    ``flying_pixels(...).sum() / discontinuity_band(...).sum()`` over the pixels the caller
    counts.

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
    predicted, truth, matched = np.array(counts, np.float64).transpose(1, 0, 2)  # [4, T] each
    scored = truth > 0  # the directions in which the GT has contours at t
    directions = scored.sum(0)
    defined = directions > 0
    if not defined.any():
        return math.nan
    precision = np.where(scored, matched / np.maximum(predicted, 1), 0).sum(0)[defined]
    recall = np.where(scored, matched / np.maximum(truth, 1), 0).sum(0)[defined]
    precision, recall = precision / directions[defined], recall / directions[defined]
    total = precision + recall
    f1 = np.divide(2 * precision * recall, total, out=np.zeros_like(total), where=total > 0)
    weights = THRESHOLDS[defined]
    return float(np.sum(f1 * weights) / weights.sum())


def aligned_flying_rate(depth: np.ndarray, gt: np.ndarray, valid: np.ndarray) -> float:
    """`flying_pixel_rate` of an aligned float64 depth (as `aligned_prediction` returns it)."""
    band, flying = _band_and_flying(depth, gt, valid)
    candidates = band.sum()
    return float(flying.sum() / candidates) if candidates else math.nan


def _count_above(samples: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """How many of `samples` exceed each of the ascending `thresholds`."""
    return samples.size - np.searchsorted(np.sort(samples), thresholds, side="right")


def _band_and_flying(depth: np.ndarray, gt: np.ndarray, valid: np.ndarray
                     ) -> tuple[np.ndarray, np.ndarray]:
    band = _band(gt, valid)
    rows, columns = np.nonzero(band)
    known_gt = _windows(np.where(valid, gt, np.nan))
    known_depth = _windows(np.where(valid, depth.astype(np.float64, copy=False), np.nan))
    floating = np.zeros(rows.size, bool)
    for start in range(0, rows.size, CHUNK):
        at = slice(start, start + CHUNK)
        floating[at] = _floating(depth[rows[at], columns[at]], gt[rows[at], columns[at]],
                                 known_depth[rows[at], columns[at]].reshape(-1, WINDOW),
                                 known_gt[rows[at], columns[at]].reshape(-1, WINDOW))
    flying = np.zeros_like(band)
    flying[rows[floating], columns[floating]] = True
    return band, flying


def _floating(depth: np.ndarray, gt: np.ndarray, window_depth: np.ndarray,
              window_gt: np.ndarray) -> np.ndarray:
    """Whether each candidate's `depth` floats between its predicted local sides.

    `depth`, `gt`: [N] at the candidates; `window_depth`, `window_gt`: [N, 49] over their 7×7
    windows, NaN where the GT is invalid (and the depth NaN where it is missing). A window's
    pixels are on the near side when their GT is nearer (in log depth) to the window's
    nearest GT than to its farthest; each side is the median of its pixels, in the GT and in
    the prediction, so a smooth error moves both sides with the pixel.
    """
    nearest = np.nanmin(window_gt, axis=1, keepdims=True)
    farthest = np.nanmax(window_gt, axis=1, keepdims=True)
    with np.errstate(invalid="ignore"):  # NaN comparisons are False: not on a side
        on_near = window_gt < np.sqrt(nearest * farthest)
        on_far = window_gt >= np.sqrt(nearest * farthest)
        counted = np.isfinite(window_depth)  # a pixel without depth sets no side
        (near, near_error), (far, far_error) = (
            _median(np.where(side & counted, window_depth, np.nan)) for side in (on_near, on_far))
        (near_gt, _), (far_gt, _) = (
            _median(np.where(side & counted, window_gt, np.nan)) for side in (on_near, on_far))
        step = far - near
        margin = MARGIN * step
        own = near + (gt - near_gt) / (far_gt - near_gt) * step  # the GT mapped between sides
        apart = step > SEPARATION * np.hypot(near_error, far_error)  # not merged by noise
        return (apart & (depth > near + margin) & (depth < far - margin)
                & (np.abs(depth - own) > margin))


def _median(samples: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Median of each row's finite samples ([N, K] -> [N]) and its standard error, from the
    interquartile range (σ ≈ IQR / 1.349; a median's error ≈ 1.2533 σ / √n); NaN for a row
    without samples. One sort of the rows, faster than np.nanmedian on many short rows."""
    ordered = np.sort(samples, axis=1)  # NaN last
    count = np.isfinite(samples).sum(axis=1)
    last = (count - 1).clip(0)
    at = np.stack([last // 2, count // 2, last // 4, (3 * last + 3) // 4], axis=1).clip(0)
    middle, middle_too, lower, upper = np.take_along_axis(ordered, at.clip(max=last[:, None]),
                                                          axis=1).T
    with np.errstate(invalid="ignore", divide="ignore"):
        error = 1.2533 * (upper - lower) / 1.349 / np.sqrt(count)
        return (np.where(count > 0, (middle + middle_too) / 2, np.nan),
                np.where(count > 0, error, np.nan))


def _windows(image: np.ndarray) -> np.ndarray:
    """[H, W, 7, 7] read-only view: each pixel's (2·REACH + 1)² window, NaN beyond the border."""
    padded = np.pad(image, REACH, constant_values=np.nan)
    return np.lib.stride_tricks.sliding_window_view(padded, (2 * REACH + 1,) * 2)


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
