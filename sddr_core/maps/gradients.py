"""The paper's ∇: depth gradient magnitude, one definition for G_S, Eq. 11 and the losses.

The paper leaves ∇ unspecified; the released code uses a 3×3 Sobel with magnitude
|g_x| + |g_y| (method.md §4.1). Dividing by 8 (the Sobel kernel's weight) and by the map's value
range makes it the per-pixel change as a fraction of the range, comparable across maps.
"""

from __future__ import annotations

import cv2
import numpy as np


def gradient_magnitude(depth: np.ndarray, value_range: float | None = None) -> np.ndarray:
    """(|Sobel_x| + |Sobel_y|) / 8 of `depth`, divided by `value_range` (default: its own
    max − min), as float32; edges are replicated at the border."""
    depth = np.asarray(depth, dtype=np.float32)
    if value_range is None:
        value_range = float(depth.max() - depth.min())
    grad_x = cv2.Sobel(depth, cv2.CV_32F, 1, 0, ksize=3, borderType=cv2.BORDER_REPLICATE)
    grad_y = cv2.Sobel(depth, cv2.CV_32F, 0, 1, ksize=3, borderType=cv2.BORDER_REPLICATE)
    return (np.abs(grad_x) + np.abs(grad_y)) / (8.0 * max(value_range, 1e-12))


def mean_gradient(depth: np.ndarray, value_range: float | None = None) -> float:
    """Mean of `gradient_magnitude`: how much edge content a map (or a window of it) holds."""
    return float(gradient_magnitude(depth, value_range).mean())
