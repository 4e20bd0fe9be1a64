"""Window geometry of the coarse-to-fine steps and the masks that merge windows (method.md §3.1).

Step s = 1..S cuts the image into (s+1)² equal, overlapping windows, flush with the borders so
together they cover every pixel. Windows are merged by a weighted average with masks that are
1 inside and fall off over the overlap, so disagreeing neighbours fade into each other.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

STEPS = 3
"""S of the paper's two-stage inference (1 + 4 + 9 + 16 = 30 network passes)."""
MAX_STEPS = 8
"""The largest S a user may ask for (the CLI, the add-on, training's labels): 285 network
passes; at S = 8 a 4K photo's windows (549×309 px) are already down to a predictor's training
resolution."""
OVERLAP = 0.25
"""Fraction of a window's side shared with its neighbour (the code uses 0.2–0.25)."""


@dataclass(frozen=True)
class Window:
    """A rectangle of the image, in pixels."""

    top: int
    left: int
    height: int
    width: int

    @property
    def region(self) -> tuple[int, int, int, int]:
        return self.top, self.left, self.height, self.width

    @property
    def slices(self) -> tuple[slice, slice]:
        return slice(self.top, self.top + self.height), slice(self.left, self.left + self.width)

    def crop(self, array):
        """The window's pixels of an H×W (or H×W×C) array or tensor (a view)."""
        rows, cols = self.slices
        return array[rows, cols]


def passes(steps: int) -> int:
    """Network passes of a refinement with `steps` coarse-to-fine steps: 1 + Σ (s+1)²."""
    return 1 + sum((s + 1) ** 2 for s in range(1, steps + 1))


def step_windows(height: int, width: int, step: int, overlap: float = OVERLAP) -> list[Window]:
    """The (step+1)² equal windows of a step, row by row: together they cover the image, and
    neighbours share `overlap` of a window's side (up to rounding)."""
    rows, row_size = _spans(height, step + 1, overlap)
    cols, col_size = _spans(width, step + 1, overlap)
    return [Window(top, left, row_size, col_size) for top in rows for left in cols]


def _spans(length: int, count: int, overlap: float) -> tuple[list[int], int]:
    """Starts and size of `count` windows along a side of `length` pixels."""
    size = min(length, math.ceil(length / (count - (count - 1) * overlap)))
    if count == 1:
        return [0], size
    return [round(i * (length - size) / (count - 1)) for i in range(count)], size


def blend_mask(window: Window, height: int, width: int, overlap: float = OVERLAP) -> np.ndarray:
    """Weight of `window` when merging: 1 inside, a raised-cosine ramp across the overlap on
    every side that is not the image border. Neighbours' ramps cross over the shared strip,
    so the weights change smoothly and never reach 0."""

    def profile(start: int, size: int, length: int) -> np.ndarray:
        ramp_length = max(1, round(size * overlap))
        ramp = 0.5 - 0.5 * np.cos(np.pi * (np.arange(ramp_length) + 0.5) / ramp_length)
        weights = np.ones(size, np.float32)
        if start > 0:
            weights[:ramp_length] = ramp[: min(ramp_length, size)]
        if start + size < length:
            weights[-ramp_length:] = np.minimum(weights[-ramp_length:], ramp[::-1])
        return weights

    return np.outer(profile(window.top, window.height, height),
                    profile(window.left, window.width, width))
