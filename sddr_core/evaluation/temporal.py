"""Temporal consistency of a depth clip against exact depth (issue 27, part 2).

`temporal_alignment_error` is Video Depth Anything's TAE (arXiv 2501.12375, §4.1, its
`eval_tae`): the clip's predictions get one least-squares scale and shift in disparity, each
frame's depth is reprojected into the next with the known poses and intrinsics, and the
AbsRel against the next frame's prediction, both directions averaged, is the clip's mean ×100.
`static_temporal_std` is the flicker a viewer sees on a still scene: the per-pixel standard
deviation over time of the aligned depth, relative to its mean, on pixels whose true depth
does not change. docs/video.md explains both.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from ..errors import InputError
from ..maps.alignment import fit_affine
from ..scenes.raycast import Camera

STILL = 1e-3
"""A pixel is static when its true depth changes by less than this fraction over the clip."""


def aligned_clip_depth(predictions: np.ndarray, depth: np.ndarray, space: str = "disparity"
                       ) -> np.ndarray:
    """(T, H, W) depth of `predictions` after one scale and shift for the whole clip.

    The fit is least squares in disparity (1/depth) over every frame's pixels, as VDA's TAE
    does; `space` is the predictions' polarity ("disparity": near = large, or "depth").
    Disparities the fit leaves ≤ 0 are clamped to the smallest positive true disparity.
    """
    predictions, depth = _checked_clip(predictions, depth)
    if space not in ("disparity", "depth"):
        raise InputError(f"space {space!r}: choose 'disparity' or 'depth'")
    source = predictions if space == "disparity" else 1 / np.maximum(predictions, 1e-6)
    truth = 1 / depth
    scale, shift = fit_affine(torch.from_numpy(source.reshape(1, -1).astype(np.float64)),
                              torch.from_numpy(truth.reshape(1, -1).astype(np.float64)),
                              nonnegative=True)
    disparity = source * float(scale[0]) + float(shift[0])
    return 1 / np.maximum(disparity, truth.min())


def temporal_alignment_error(predictions: np.ndarray, depth: np.ndarray,
                             cameras: Sequence[Camera], space: str = "disparity",
                             mask: np.ndarray | None = None) -> float:
    """VDA's TAE (×100, lower is steadier) of a (T, H, W) clip of predictions.

    Parameters
    ----------
    predictions : (T, H, W) array, relative depth of polarity `space`, any scale and shift.
    depth : (T, H, W) array, exact depth (finite and > 0 everywhere).
    cameras : each frame's `Camera` (pose and intrinsics K in pixels of this size).
    mask : (T, H, W) bool, optional
        Pixels that count, e.g. not on a moving object: reprojection by the camera's motion
        is right only for a still scene. A pixel counts where it is True in the frame it
        comes from and in the frame it lands in.

    Notes
    -----
    Reprojected points that land on the same pixel keep the nearest (VDA's script keeps an
    arbitrary one; at occlusions the nearest is the one the next frame sees).

    Examples
    --------
    >>> from sddr_core.scenes.sequence import render_clip
    >>> clip = render_clip(1, frames=3, height=24, width=32, motion="static")
    >>> round(temporal_alignment_error(1 / clip.depth, clip.depth, clip.cameras), 6)
    0.0
    >>> jittered = np.array([1.0, 1.1, 1.0])[:, None, None] / clip.depth
    >>> round(temporal_alignment_error(jittered, clip.depth, clip.cameras), 1)
    9.3
    """
    predictions, depth = _checked_clip(predictions, depth)
    if len(cameras) != len(depth):
        raise InputError(f"cameras: expected one per frame ({len(depth)}), got {len(cameras)}")
    if len(depth) < 2:
        raise InputError("predictions: TAE needs at least 2 frames, got 1")
    counts = np.ones(depth.shape, bool) if mask is None else np.asarray(mask, bool)
    if counts.shape != depth.shape:
        raise InputError(f"mask: expected shape {depth.shape} like depth, got {counts.shape}")
    aligned = aligned_clip_depth(predictions, depth, space)
    pairs = [(t, t + 1) for t in range(len(depth) - 1)]
    errors = [np.mean([_reprojected_abs_rel(aligned[a], aligned[b], counts[a], counts[b],
                                            cameras[a], cameras[b])
                       for a, b in ((t, u), (u, t))]) for t, u in pairs]
    return 100 * float(np.mean(errors))


def static_temporal_std(predictions: np.ndarray, depth: np.ndarray,
                        space: str = "disparity") -> float:
    """Mean over static pixels of std(aligned depth over time) / mean, ×100; NaN when no
    pixel is static (a moving camera)."""
    predictions, depth = _checked_clip(predictions, depth)
    static = (depth.max(axis=0) - depth.min(axis=0)) < STILL * depth.min(axis=0)
    if not static.any():
        return float("nan")
    aligned = aligned_clip_depth(predictions, depth, space)[:, static]
    return 100 * float(np.mean(aligned.std(axis=0) / aligned.mean(axis=0)))


def _reprojected_abs_rel(source: np.ndarray, target: np.ndarray, source_mask: np.ndarray,
                         target_mask: np.ndarray, camera: Camera, other: Camera) -> float:
    """AbsRel of `source`'s depth moved into `other`'s view against `target` where it lands
    (only pixels in `source_mask` move, only those landing in `target_mask` count)."""
    height, width = source.shape
    rows, cols = np.nonzero(source_mask)
    pixels = np.stack([cols + 0.5, rows + 0.5, np.ones(len(cols))])
    points = camera.rotation @ (np.linalg.inv(camera.intrinsics) @ pixels * source[rows, cols])
    local = other.rotation.T @ (points + (camera.position - other.position)[:, None])
    projected = other.intrinsics @ local
    z = projected[2]
    ahead = z > 1e-6
    col = np.floor(projected[0, ahead] / z[ahead]).astype(int)
    row = np.floor(projected[1, ahead] / z[ahead]).astype(int)
    inside = (col >= 0) & (col < width) & (row >= 0) & (row < height)
    landed = np.full(height * width, np.inf)
    np.minimum.at(landed, row[inside] * width + col[inside], z[ahead][inside])
    hit = np.isfinite(landed) & target_mask.ravel()
    if not hit.any():
        return float("nan")
    reference = target.ravel()[hit]
    return float(np.mean(np.abs(landed[hit] - reference) / reference))


def _checked_clip(predictions, depth) -> tuple[np.ndarray, np.ndarray]:
    predictions = np.asarray(predictions, dtype=np.float64)
    depth = np.asarray(depth, dtype=np.float64)
    if depth.ndim != 3:
        raise InputError(f"depth: expected a (T, H, W) clip, got shape {depth.shape}")
    if predictions.shape != depth.shape:
        raise InputError(f"predictions: expected shape {depth.shape} like depth, got "
                         f"{predictions.shape}")
    if not (np.isfinite(depth).all() and (depth > 0).all()):
        raise InputError("depth: must be finite and > 0 everywhere")
    if not np.isfinite(predictions).all():
        raise InputError("predictions: hold NaN or infinite values")
    return predictions, depth
