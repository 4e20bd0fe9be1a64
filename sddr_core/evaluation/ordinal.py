"""Ordinal metrics: Boost's superpixel ORD and D3R, and the ranking-loss ORD of SDDR's Eq. 13.

Written from the protocol in method.md §6.1 (Boost's MATLAB is not copied); our settings and
where they differ from Boost are explained in docs/metrics.md. The metric functions take the
prediction already aligned to GT *depth* (see `evaluation.metrics`), the GT depth and the
boolean map of valid pixels, all H×W numpy arrays.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from ..errors import SddrError

SUPERPIXEL_LONG_SIDE = 384  # Boost's superpixel_scale 0.2 × Middlebury's 1920 px
SUPERPIXELS = 5000  # requested from SLIC, as Boost asks MATLAB's `superpixels`
COMPACTNESS = 20  # Boost's; our intensities span [0, 100] like MATLAB's L channel
ORD_PARTNERS = 3  # random partners per superpixel
ORD_DELTA = 1.03  # ordinal tolerance of ORD
D3R_GT_RATIO = 1.1  # a neighbour pair counts only across a real GT discontinuity
D3R_DELTA = 1.01  # ordinal tolerance of D3R
RANKING_TAU = 0.03  # τ of Eq. 13 (the σ of SDDR's ranking loss)
RANKING_ANCHORS = 3000  # edge anchors sampled per image, for speed
EDGE_THRESHOLD = 0.1  # anchors: Sobel magnitude ≥ this × the image's maximum
EDGE_DISTANCES = (2, 30)  # px from the anchor, along the gradient, of the sampled points


@dataclass(frozen=True)
class Superpixels:
    """Superpixel centres of a GT map, computed once and shared by ORD and D3R.

    `rows`, `cols`: full-resolution centre pixel of each kept superpixel (all valid).
    `neighbours`: K×2 indices into `rows`/`cols` of touching superpixels, each pair once.
    """

    rows: np.ndarray
    cols: np.ndarray
    neighbours: np.ndarray


def superpixel_points(gt_depth: np.ndarray, valid: np.ndarray) -> Superpixels:
    """SLIC superpixels of the GT disparity at ≤ SUPERPIXEL_LONG_SIDE px, and their centres.

    SLIC runs on the whole (downscaled) map with invalid pixels set to 0, as Boost runs MATLAB's
    `superpixels`; invalid pixels then leave their superpixel. skimage's `mask=` would do the
    masking inside SLIC, but it seeds by k-means over the mask: 6–10 s per image against 0.1 s.
    """
    try:
        from skimage.segmentation import slic
    except ImportError as e:
        raise SddrError("ORD/D3R need scikit-image: pip install 'sddr[eval]'") from e

    height, width = gt_depth.shape
    factor = min(1.0, SUPERPIXEL_LONG_SIDE / max(height, width))
    row_of = _nearest(height, max(1, round(height * factor)))
    col_of = _nearest(width, max(1, round(width * factor)))
    small_valid = valid[np.ix_(row_of, col_of)]
    disparity = np.divide(1.0, gt_depth[np.ix_(row_of, col_of)], out=np.zeros(small_valid.shape),
                          where=small_valid)
    if small_valid.any():
        low, high = disparity[small_valid].min(), disparity[small_valid].max()
        scale = 100 / (high - low) if high > low else 0.0
        disparity = np.where(small_valid, (disparity - low) * scale, 0.0)
    labels = slic(disparity, n_segments=SUPERPIXELS, compactness=COMPACTNESS, channel_axis=None,
                  start_label=1, enforce_connectivity=True)
    labels[~small_valid] = 0

    flat = labels.ravel()
    counts = np.bincount(flat)
    present = np.flatnonzero(counts[1:]) + 1
    grid_rows, grid_cols = np.indices(labels.shape)
    mean_rows = np.bincount(flat, grid_rows.ravel())[present] // counts[present]
    mean_cols = np.bincount(flat, grid_cols.ravel())[present] // counts[present]
    rows, cols = row_of[mean_rows.astype(int)], col_of[mean_cols.astype(int)]
    kept = valid[rows, cols]

    point_of = np.full(len(counts), -1)
    point_of[present[kept]] = np.arange(kept.sum())
    pairs = point_of[_touching_labels(labels)]
    return Superpixels(rows[kept], cols[kept], pairs[(pairs >= 0).all(axis=1)])


def boost_ord(pred_depth: np.ndarray, gt_depth: np.ndarray, valid: np.ndarray, seed: int = 0,
              superpixels: Superpixels | None = None) -> float:
    """Boost's ORD: ordinal disagreement over random pairs of superpixel centres.

    Each centre gets ORD_PARTNERS partners drawn uniformly (itself included); pairs whose GT
    values are equal are skipped. NaN when no pair is usable.
    """
    points = superpixel_points(gt_depth, valid) if superpixels is None else superpixels
    count = len(points.rows)
    if count == 0:
        return float("nan")
    partners = np.random.default_rng(seed).integers(count, size=(count, ORD_PARTNERS))
    pairs = np.stack([np.repeat(np.arange(count), ORD_PARTNERS), partners.ravel()], axis=1)
    return _ordinal_error(pred_depth, gt_depth, points, pairs, gt_ratio=1.0, delta=ORD_DELTA)


def d3r(pred_depth: np.ndarray, gt_depth: np.ndarray, valid: np.ndarray,
        superpixels: Superpixels | None = None) -> float:
    """D3R: ordinal disagreement across neighbouring superpixels separated by a GT
    discontinuity (ratio > D3R_GT_RATIO), i.e. how well depth edges are placed. NaN when no
    such pair exists."""
    points = superpixel_points(gt_depth, valid) if superpixels is None else superpixels
    return _ordinal_error(pred_depth, gt_depth, points, points.neighbours,
                          gt_ratio=D3R_GT_RATIO, delta=D3R_DELTA)


def ranking_ord(pred_depth: np.ndarray, gt_depth: np.ndarray, valid: np.ndarray,
                seed: int = 0) -> float:
    """SDDR's Eq. 13: mean ranking loss over edge-guided plus as many uniform random pairs.

    Depths are divided by the GT's valid maximum so the loss has a fixed scale; a perfect
    prediction still scores above 0 (the logistic term never vanishes). NaN without pairs.
    """
    rng = np.random.default_rng(seed)
    first, second = _edge_guided_pairs(gt_depth, valid, rng)
    uniform = rng.choice(np.flatnonzero(valid), size=(2, len(first)))
    first, second = np.concatenate([first, uniform[0]]), np.concatenate([second, uniform[1]])
    if len(first) == 0:
        return float("nan")
    top = gt_depth[valid].max()
    pred, gt = pred_depth.ravel() / top, gt_depth.ravel() / top
    ratio = gt[first] / gt[second]
    label = (ratio >= 1 + RANKING_TAU).astype(int) - (ratio <= 1 / (1 + RANKING_TAU))
    diff = pred[first] - pred[second]
    loss = np.where(label != 0, np.logaddexp(0.0, -label * diff), diff**2)
    return float(loss.mean())


def _ord(a: np.ndarray, b: np.ndarray, delta: float) -> np.ndarray:
    """+1 where a/b > delta, −1 where a/b < 1/delta, else 0 (`a`, `b` are positive depths,
    which the clamp in metrics guarantees, so Boost's eps is not needed)."""
    ratio = a / b
    return np.where(ratio > delta, 1, 0) - np.where(ratio < 1 / delta, 1, 0)


def _ordinal_error(pred_depth: np.ndarray, gt_depth: np.ndarray, points: Superpixels,
                   pairs: np.ndarray, gt_ratio: float, delta: float) -> float:
    """Mean |ord_gt − ord_pred| (0, 1 or 2) over the point pairs whose GT ratio exceeds
    `gt_ratio` (either way); NaN when there are none."""
    gt = gt_depth[points.rows, points.cols]
    pred = pred_depth[points.rows, points.cols]
    first, second = pairs[:, 0], pairs[:, 1]
    used = _ord(gt[first], gt[second], gt_ratio) != 0
    if not used.any():
        return float("nan")
    first, second = first[used], second[used]
    errors = np.abs(_ord(gt[first], gt[second], delta) - _ord(pred[first], pred[second], delta))
    return float(errors.mean())


def _nearest(full: int, small: int) -> np.ndarray:
    """Index of the full-resolution pixel each of `small` nearest-neighbour samples reads."""
    return ((np.arange(small) + 0.5) * (full / small)).astype(int)


def _touching_labels(labels: np.ndarray) -> np.ndarray:
    """Unique (low, high) label pairs that are 4-neighbours (Boost's `bwdist == 1`), label 0
    excluded."""
    right = np.stack([labels[:, :-1].ravel(), labels[:, 1:].ravel()], axis=1)
    down = np.stack([labels[:-1].ravel(), labels[1:].ravel()], axis=1)
    pairs = np.sort(np.concatenate([right, down]), axis=1)
    pairs = pairs[(pairs[:, 0] != pairs[:, 1]) & (pairs[:, 0] > 0)]
    return np.unique(pairs, axis=0).reshape(-1, 2)


def _edge_guided_pairs(gt_depth: np.ndarray, valid: np.ndarray,
                       rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Flat indices of Xian et al.'s edge-guided pairs: four points on the gradient line through
    each sampled GT edge anchor, two on each side, paired a-b, b-c, c-d; both ends valid.

    Anchors need a fully valid 3×3 neighbourhood, so holes in the GT do not read as edges.
    """
    height, width = gt_depth.shape
    filled = np.where(valid, gt_depth, 0.0)
    grad_x = cv2.Sobel(filled, cv2.CV_64F, 1, 0, ksize=3)
    grad_y = cv2.Sobel(filled, cv2.CV_64F, 0, 1, ksize=3)
    magnitude = np.hypot(grad_x, grad_y)
    inner = cv2.erode(valid.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    inner &= magnitude > 0
    if not inner.any():
        return np.zeros(0, int), np.zeros(0, int)
    anchors = np.flatnonzero(inner & (magnitude >= EDGE_THRESHOLD * magnitude[inner].max()))
    anchors = rng.choice(anchors, size=min(len(anchors), RANKING_ANCHORS), replace=False)
    distances = rng.integers(EDGE_DISTANCES[0], EDGE_DISTANCES[1] + 1, size=(len(anchors), 4))
    distances = np.sort(distances * np.array([-1, -1, 1, 1]), axis=1)
    unit_x = (grad_x.ravel()[anchors] / magnitude.ravel()[anchors])[:, None]
    unit_y = (grad_y.ravel()[anchors] / magnitude.ravel()[anchors])[:, None]
    rows = np.clip(np.round(anchors[:, None] // width + distances * unit_y), 0, height - 1)
    cols = np.clip(np.round(anchors[:, None] % width + distances * unit_x), 0, width - 1)
    points = (rows * width + cols).astype(int)
    first, second = points[:, :3].ravel(), points[:, 1:].ravel()
    both = valid.ravel()[first] & valid.ravel()[second]
    return first[both], second[both]
