"""Two-stage (coarse-to-fine) refinement and the edge pseudo-labels G_S (method.md §3).

Step 0 refines the whole image once: D0 = N_r(N_d(L), N_d(H)) and G0 = ∇D0, edge-preservingly
filtered. Step s = 1..S splits the image into (s+1)² overlapping windows. A window's low input
is its crop of D_{s−1}; its high input is a fresh prediction of the window at Eq. 11's adaptive
resolution. `Refiner.refine` returns the refined window least-squares aligned to that crop,
its gradient is aligned to G_{s−1} (Eq. 6), and the windows are merged with smooth masks that
sum to one, so no seam shows. The windows of a step run through N_r as batches.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import cv2
import numpy as np
import torch

from ..errors import SddrError
from ..maps.alignment import fit_affine
from ..maps.gradients import gradient_magnitude, mean_gradient
from ..maps.resample import resize_maps, scaled_size

if TYPE_CHECKING:  # refiner.py imports this module
    from ..predictors.huggingface import DepthPredictor
    from .refiner import Refiner

STEPS = 3
"""S of the paper's two-stage inference (1 + 4 + 9 + 16 = 30 network passes)."""
OVERLAP = 0.25
"""Fraction of a window's side shared with its neighbour (the code uses 0.2–0.25)."""
DETAIL_FACTOR_RANGE = (0.5, 2.0)
"""Clamp on the product of Eq. 11's two gradient ratios, so one odd window cannot ask for a
tiny or a huge prediction."""
MAX_RESOLUTION = 2048
"""Cap on a predictor run's long side: Eq. 11 is unbounded (a 4K photo would ask for 4224 px),
and a ViT predictor's memory grows with the square of its token count (Boost caps at 3000;
the code's one-stage high is 1920; 2048 is also N_r's own `max_side`)."""
CPU_BATCH_PIXELS = 4_000_000
"""Network-input pixels per batch on CPU: bounds memory (one 2048² pass is 4.2 M)."""
EDGE_FILTER = {"d": 5, "sigmaColor": 0.05, "sigmaSpace": 2.0}
"""Bilateral filter of G0: 5 px, edges above 5 % of the range per pixel are kept."""

Progress = Callable[[int, int], None]
Cancel = Callable[[], bool]


class Cancelled(SddrError):
    """`cancel()` asked to stop; the refinement returned nothing."""


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

    def crop(self, array: np.ndarray) -> np.ndarray:
        return array[self.top:self.top + self.height, self.left:self.left + self.width]


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


def adaptive_resolution(training_resolution: int, native_side: int, detail: float) -> int:
    """Eq. 11: h = mean(r̂, r) · detail, with `detail` the product of the gradient ratios
    (clamped to DETAIL_FACTOR_RANGE), at most MAX_RESOLUTION."""
    factor = min(max(detail, DETAIL_FACTOR_RANGE[0]), DETAIL_FACTOR_RANGE[1])
    return min(MAX_RESOLUTION, max(8, round((training_resolution + native_side) / 2 * factor)))


def edge_label(depth: np.ndarray, value_range: float) -> np.ndarray:
    """G0: ∇D0 (per-pixel change as a fraction of `value_range`), bilateral-filtered so flat
    regions lose their noise and edges stay sharp."""
    return cv2.bilateralFilter(gradient_magnitude(depth, value_range), **EDGE_FILTER)


@dataclass
class CoarseToFine:
    """Refine one image with `refiner` and `predictor`; progress and cancel per network pass."""

    refiner: Refiner
    predictor: DepthPredictor
    progress: Progress | None = None
    cancel: Cancel | None = None

    def one_stage(self, image: np.ndarray, total: int = 1,
                  inputs: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
        """D0 at the image's size: low at r̂, high at Eq. 11's resolution for the image, or
        the given whole-image (low, high) `inputs`."""
        height, width = image.shape[:2]
        self._check_cancel()
        low, high = inputs if inputs is not None else self._whole_image_inputs(image)
        self._check_cancel()
        depth = self.refiner.refine(low, high, out_size=(height, width))
        self._report(1, total)
        return depth

    def _whole_image_inputs(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        r_hat = self.predictor.training_resolution
        low = self.predictor.predict(image, r_hat)
        detail = mean_gradient(low) / self.predictor.gradient_prior
        high = self.predictor.predict(image, adaptive_resolution(r_hat, max(image.shape[:2]),
                                                                 detail))
        return low, high

    def two_stage(self, image: np.ndarray, steps: int,
                  inputs: tuple[np.ndarray, np.ndarray] | None = None
                  ) -> tuple[np.ndarray, np.ndarray]:
        """(D_S, G_S) after `steps` coarse-to-fine steps (step 0 from `inputs` if given)."""
        total = passes(steps)
        depth = self.one_stage(image, total, inputs)
        value_range = float(depth.max() - depth.min()) or 1.0
        edges = edge_label(depth, value_range)
        done = 1
        for step in range(1, steps + 1):
            depth, edges, done = self._step(image, depth, edges, value_range, step, done, total)
        return depth, edges

    def _step(self, image, base, base_edges, value_range, step, done, total):
        """One step: every window refined against its crop of `base`, merged by masks."""
        height, width = base.shape
        windows = step_windows(height, width, step)
        resolutions = self._resolutions(windows, base, value_range)
        # N_r's input size for every window of the step
        size = scaled_size(windows[0].height, windows[0].width, max(resolutions))
        batch = _batch_size(self.refiner, size, len(windows))
        depth_sum = np.zeros((height, width), np.float64)
        edge_sum = np.zeros((height, width), np.float64)
        weight_sum = np.zeros((height, width), np.float64)
        for start in range(0, len(windows), batch):
            chunk = windows[start:start + batch]
            highs = []
            for window, resolution in zip(chunk, resolutions[start:start + batch], strict=True):
                self._check_cancel()
                highs.append(self.predictor.predict(window.crop(image), resolution,
                                                    region=window.region))
            lows = [window.crop(base) for window in chunk]
            for window, refined in zip(chunk, self._refine_batch(lows, highs, size),
                                       strict=True):
                mask = blend_mask(window, height, width)
                rows = slice(window.top, window.top + window.height)
                cols = slice(window.left, window.left + window.width)
                edge = _align(gradient_magnitude(refined, value_range), window.crop(base_edges))
                depth_sum[rows, cols] += mask * refined
                edge_sum[rows, cols] += mask * edge
                weight_sum[rows, cols] += mask
                done += 1
                self._report(done, total)
        return ((depth_sum / weight_sum).astype(np.float32),
                (edge_sum / weight_sum).astype(np.float32), done)

    def _resolutions(self, windows: Sequence[Window], base: np.ndarray,
                     value_range: float) -> list[int]:
        """Eq. 11 per window: mean(r̂, r_w) · mean|∇N_d(L_w)|/α · mean|∇D_w|/mean|∇D|. The
        window's crop of D_{s−1} at r̂ stands in for N_d(L_w), saving a predictor pass."""
        r_hat = self.predictor.training_resolution
        overall = max(mean_gradient(base, value_range), 1e-12)
        resolutions = []
        for window in windows:
            crop = window.crop(base)
            height, width = scaled_size(window.height, window.width, r_hat)
            coarse = cv2.resize(crop, (width, height), interpolation=cv2.INTER_AREA)
            detail = (mean_gradient(coarse, value_range) / self.predictor.gradient_prior
                      * mean_gradient(crop, value_range) / overall)
            resolutions.append(adaptive_resolution(r_hat, max(crop.shape), detail))
        return resolutions

    def _refine_batch(self, lows: list[np.ndarray], highs: list[np.ndarray],
                      size: tuple[int, int]) -> list[np.ndarray]:
        """N_r on a batch of windows with every high at `size`; on out-of-memory the batch is
        halved and retried instead of failing."""
        high_stack = torch.cat([resize_maps(torch.from_numpy(np.asarray(h, np.float32))[None],
                                            size) for h in highs])
        low_stack = torch.from_numpy(np.stack(lows).astype(np.float32))
        refined, start, batch = [], 0, len(lows)
        while start < len(lows):
            self._check_cancel()
            stop = min(start + batch, len(lows))
            try:
                refined += list(self.refiner.refine(low_stack[start:stop], high_stack[start:stop],
                                                    out_size=lows[0].shape).cpu().numpy())
            except torch.OutOfMemoryError:
                if batch == 1:
                    raise
                batch //= 2
                if torch.cuda.is_available():
                    torch.cuda.empty_cache()
                continue
            start = stop
        return refined

    def _check_cancel(self) -> None:
        if self.cancel is not None and self.cancel():
            raise Cancelled("refinement cancelled")

    def _report(self, done: int, total: int) -> None:
        if self.progress is not None:
            self.progress(done, total)


def _batch_size(refiner: Refiner, size: tuple[int, int], count: int) -> int:
    """All windows of a step at once on CUDA (halved on out-of-memory); on CPU as many as
    CPU_BATCH_PIXELS allows."""
    if refiner.device.type == "cuda":
        return count
    height, width = refiner.network_input_size(*size)
    return max(1, min(count, CPU_BATCH_PIXELS // (height * width)))


def _align(gradient: np.ndarray, previous: np.ndarray) -> np.ndarray:
    """Eq. 6: β1·∇D_s^w + β0 fitted to G_{s−1}^w by least squares."""
    source, target = torch.from_numpy(gradient)[None], torch.from_numpy(previous)[None]
    scale, shift = fit_affine(source, target)
    return gradient * scale.item() + shift.item()
