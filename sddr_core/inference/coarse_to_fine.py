"""Two-stage (coarse-to-fine) refinement: the steps that produce D_S and G_S (method.md §3.1).

Step 0 refines the whole image once, D0 = N_r(N_d(L), N_d(H)), and G0 = ∇D0 filtered
(`edges`). Step s = 1..S cuts the image into (s+1)² overlapping windows (`windows`). A window's
low input is its crop of D_{s−1} (Eq. 5); its high input is a prediction of the window at
Eq. 11's resolution (`resolution`), or a cached one. N_r works on every window at the window's
own size (at most `max_side`): a coarser prediction is up-sampled before N_r, never N_r's
output, so no step loses resolution. Each refined window's gradient is fitted to G_{s−1} (Eq. 6)
and the windows are merged with masks. A flat window (sky, a blank wall) has nothing to refine
and keeps its crop of D_{s−1} and G_{s−1}. The windows of every image in a step run through
N_r together: all at once on CUDA (halved on out-of-memory), within a pixel budget on CPU.
"""

from __future__ import annotations

import warnings
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ..errors import InputError, SddrError
from ..maps.inputs import ASPECT_TOLERANCE, as_depth_batch, aspect_difference
from ..maps.resample import resize_maps
from ..predictors.base import DepthPredictor, predict_many
from .edges import align_edges, initial_edges
from .refiner import Refiner
from .resolution import RESOLUTION_CAP, check_cap, image_resolution, window_resolutions
from .windows import Window, blend_mask, passes, step_windows

__all__ = ["Cancel", "Cancelled", "CoarseToFine", "Estimate", "Progress",
           "whole_image_inputs"]

CPU_BATCH_PIXELS = 4_000_000
"""Network-input pixels per batch on CPU: bounds memory (one 2048² pass is 4.2 M)."""
PREDICT_BATCH_PIXELS = 4_000_000
"""Predictor-input pixels per batch of a step's windows (16 windows at 518 px are 4.3 M)."""
FLAT_TOLERANCE = 1e-6
"""A map whose values span at most this fraction of its scale (for a window of D_{s−1}: the
whole map's range; for a prediction: its largest value) is flat, numerically constant."""

Progress = Callable[[int, int], None]
Cancel = Callable[[], bool]


class Cancelled(SddrError):
    """`cancel()` asked to stop; the refinement returned nothing."""


@dataclass
class Estimate:
    """One image between steps: D_{s−1} and G_{s−1} (H×W tensors on the refiner's device) and
    where its windows' high inputs come from: `window_highs[s − 1][k]`, the cached prediction
    of window k of step s, or else the predictor run on `image` (H×W×3 uint8)."""

    depth: torch.Tensor
    edges: torch.Tensor
    image: np.ndarray | None = None
    window_highs: Sequence[Sequence[np.ndarray | torch.Tensor]] | None = None


@dataclass
class _Job:
    """One map for N_r (a window or a whole image): H×W low and high inputs and the output
    size; jobs whose sizes all match run as one batch."""

    low: torch.Tensor
    high: torch.Tensor
    out_size: tuple[int, int]


def whole_image_inputs(predictor: DepthPredictor, image: np.ndarray,
                       resolution_cap: float | None = RESOLUTION_CAP
                       ) -> tuple[np.ndarray, np.ndarray]:
    """The predictor's (low at r̂, high at Eq. 11's resolution, capped at `resolution_cap`)
    for the whole RGB `image`: step 0's inputs, and all a clip frame needs from N_d (a
    process holding only the predictor runs this, decision 311)."""
    r_hat = predictor.training_resolution
    low = predictor.predict(image, r_hat)
    resolution = image_resolution(low, r_hat, max(image.shape[:2]), predictor.gradient_prior,
                                  resolution_cap)
    high = predictor.predict(image, resolution)
    return _framed_as(low, image.shape[:2]), _framed_as(high, image.shape[:2])


def _framed_as(prediction: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """`prediction` of a photo of `shape` (H, W), resized to the photo's aspect ratio (its long
    side kept) where the predictor's rounding of each side to its patch size moved it by more
    than ASPECT_TOLERANCE; otherwise as it is.

    On a long thin photo the rounding is large (a 600×40 photo at 518 px: 28 rows for 34.5),
    and N_r's pair check would take the two predictions for depth of two different pictures.
    """
    if aspect_difference(prediction.shape, shape) <= ASPECT_TOLERANCE:
        return prediction
    height, width = prediction.shape[-2:]
    scale = max(height, width) / max(shape)
    size = (max(1, round(shape[0] * scale)), max(1, round(shape[1] * scale)))
    resized = resize_maps(torch.as_tensor(prediction, dtype=torch.float32)[None], size)[0]
    return resized.numpy()


class CoarseToFine:
    """Refine images with `refiner` and `predictor`; progress and cancel per network pass.
    `resolution_cap`: no predictor run's long side exceeds this multiple of its region's (None:
    uncapped)."""

    def __init__(self, refiner: Refiner, predictor: DepthPredictor | None = None,
                 progress: Progress | None = None, cancel: Cancel | None = None,
                 resolution_cap: float | None = RESOLUTION_CAP):
        self.refiner = refiner
        self.predictor = predictor
        self.resolution_cap = check_cap(resolution_cap)
        self.progress = progress
        self.cancel = cancel
        self._done = 0
        self._total = 1

    # ---------------------------------------------------------------------------- one image

    def one_stage(self, image: np.ndarray,
                  inputs: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
        """D0 at the image's size: low at r̂, high at Eq. 11's resolution for the image, or
        the given whole-image (low, high) `inputs`."""
        self._start(1)
        return self._first_pass(image, inputs).cpu().numpy()

    def two_stage(self, image: np.ndarray, steps: int,
                  inputs: tuple[np.ndarray, np.ndarray] | None = None
                  ) -> tuple[np.ndarray, np.ndarray]:
        """(D_S, G_S) after `steps` coarse-to-fine steps (step 0 from `inputs` if given)."""
        self._start(passes(steps))
        depth = self._first_pass(image, inputs)
        estimate = Estimate(depth, initial_edges(depth), image)
        self.refine_steps([estimate], steps)
        return estimate.depth.cpu().numpy(), estimate.edges.cpu().numpy()

    def _first_pass(self, image: np.ndarray,
                    inputs: tuple[np.ndarray, np.ndarray] | None) -> torch.Tensor:
        self._check_cancel()
        low, high = inputs if inputs is not None else self.whole_image_inputs(image)
        return self.first_passes([(low, high, image.shape[:2])])[0]

    def whole_image_inputs(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The predictor's (low at r̂, high at Eq. 11's resolution) for the whole image."""
        return whole_image_inputs(self.predictor, image, self.resolution_cap)

    # ------------------------------------------------------------------------ many images

    def first_passes(self, pairs: Sequence[tuple[np.ndarray | torch.Tensor,
                                                 np.ndarray | torch.Tensor, tuple[int, int]]]
                     ) -> list[torch.Tensor]:
        """D0 (H×W, on the refiner's device) of each whole-image (low, high, (H, W)) triple;
        pairs of equal sizes run through N_r as one batch."""
        device = self.refiner.device
        return self._refine_all([_Job(as_depth_batch(low, "low", device)[0],
                                      as_depth_batch(high, "high", device)[0],
                                      (int(size[0]), int(size[1])))
                                 for low, high, size in pairs])

    def refine_steps(self, estimates: Sequence[Estimate], steps: int) -> int:
        """Steps 1..`steps` on every estimate in place (D_S and G_S replace D0 and G0);
        returns how many windows were flat and kept D_{s−1} and G_{s−1} (also warned)."""
        kept = windows = 0
        for step in range(1, steps + 1):
            kept += self._step(estimates, step)
            windows += len(estimates) * (step + 1) ** 2
        if kept:
            warnings.warn(f"two-stage: {kept} of {windows} windows were flat (nothing to "
                          "refine) and kept their crop of the previous step's depth and edges",
                          stacklevel=2)
        return kept

    def _step(self, estimates: Sequence[Estimate], step: int) -> int:
        """One step over every estimate: windows refined against their crop of D_{s−1},
        edges by Eq. 6, merged by masks. Returns the number of flat windows."""
        placed: list[tuple[Estimate, Window]] = []
        jobs: list[_Job] = []
        kept: list[tuple[Estimate, Window]] = []
        for estimate in estimates:
            windows = step_windows(*estimate.depth.shape, step)
            for window, high in zip(windows, self._window_highs(estimate, windows, step),
                                    strict=True):
                if high is None:
                    kept.append((estimate, window))
                    self._report()
                    continue
                size = self.refiner.working_size(window.height, window.width)
                jobs.append(_Job(window.crop(estimate.depth), resize_maps(high[None], size)[0],
                                 (window.height, window.width)))
                placed.append((estimate, window))
        refined = self._refine_all(jobs)
        merged = {id(e): _Merge(e) for e in estimates}
        for (estimate, window), depth in zip(placed, refined, strict=True):
            edges = align_edges(depth[None], window.crop(estimate.edges)[None])[0]
            merged[id(estimate)].add(window, depth, edges)
        for estimate, window in kept:
            merged[id(estimate)].add(window, window.crop(estimate.depth),
                                     window.crop(estimate.edges))
        for merge in merged.values():
            merge.finish()
        return len(kept)

    def _window_highs(self, estimate: Estimate, windows: list[Window], step: int
                      ) -> list[torch.Tensor | None]:
        """Each window's high input (2-D, on the refiner's device), or None for a flat
        window: its crop of D_{s−1} or its prediction is constant."""
        scale = float(estimate.depth.max() - estimate.depth.min())
        flat = [_is_flat(window.crop(estimate.depth), scale) for window in windows]
        if estimate.window_highs is not None:
            maps = _cached(estimate.window_highs, step, len(windows))
        else:
            maps = self._predict_windows(estimate, windows, flat)
        return [None if skip else _prediction(high, self.refiner.device)
                for high, skip in zip(maps, flat, strict=True)]

    def _predict_windows(self, estimate: Estimate, windows: list[Window], flat: list[bool]
                         ) -> list[np.ndarray | None]:
        """The predictor's map of each window that is not flat, at its Eq. 11 resolution;
        windows of one resolution (all of a step's, once capped) go through it as batches."""
        if self.predictor is None or estimate.image is None:
            raise InputError("window predictions: give cached window highs, or an image and "
                             "a predictor to make them")
        resolutions = window_resolutions(estimate.depth, windows,
                                         self.predictor.training_resolution,
                                         self.predictor.gradient_prior,
                                         self.resolution_cap)
        maps: list[np.ndarray | None] = [None] * len(windows)
        groups: dict[int, list[int]] = defaultdict(list)  # resolution → windows to predict
        for index, (resolution, skip) in enumerate(zip(resolutions, flat, strict=True)):
            if not skip:
                groups[resolution].append(index)
        for resolution, indices in groups.items():
            batch = max(1, PREDICT_BATCH_PIXELS // resolution**2) \
                if hasattr(self.predictor, "predict_batch") else 1  # cancel between runs
            for start in range(0, len(indices), batch):
                self._check_cancel()
                chunk = indices[start:start + batch]
                predicted = predict_many(self.predictor,
                                         [windows[i].crop(estimate.image) for i in chunk],
                                         resolution, [windows[i].region for i in chunk])
                for index, high in zip(chunk, predicted, strict=True):
                    maps[index] = high
        return maps

    # ---------------------------------------------------------------------- N_r in batches

    def _refine_all(self, jobs: list[_Job]) -> list[torch.Tensor]:
        """N_r on every job, jobs of one layout batched; on out-of-memory a batch is halved
        and retried instead of failing."""
        results: list[torch.Tensor | None] = [None] * len(jobs)
        groups: dict[tuple, list[int]] = defaultdict(list)
        for index, job in enumerate(jobs):
            groups[(job.low.shape, job.high.shape, job.out_size)].append(index)
        for (_, high_shape, out_size), indices in groups.items():
            batch, start = self._batch_size(high_shape, len(indices)), 0
            while start < len(indices):
                self._check_cancel()
                chunk = indices[start:start + batch]
                try:
                    refined = self.refiner.refine(torch.stack([jobs[i].low for i in chunk]),
                                                  torch.stack([jobs[i].high for i in chunk]),
                                                  out_size=out_size)
                except torch.OutOfMemoryError:
                    if batch == 1:
                        raise
                    batch //= 2
                    if torch.cuda.is_available():
                        torch.cuda.empty_cache()
                    continue
                for index, depth in zip(chunk, refined, strict=True):
                    results[index] = depth
                    self._report()
                start += len(chunk)
        return results

    def _batch_size(self, high_shape: tuple[int, int], count: int) -> int:
        """All at once on CUDA (halved on out-of-memory); on CPU as many as CPU_BATCH_PIXELS
        allows."""
        if self.refiner.device.type == "cuda":
            return count
        height, width = self.refiner.network_input_size(*high_shape)
        return max(1, min(count, CPU_BATCH_PIXELS // (height * width)))

    # ------------------------------------------------------------------- progress, cancel

    def _start(self, total: int) -> None:
        self._done, self._total = 0, total

    def _check_cancel(self) -> None:
        if self.cancel is not None and self.cancel():
            raise Cancelled("refinement cancelled")

    def _report(self) -> None:
        self._done += 1
        if self.progress is not None:
            self.progress(self._done, self._total)


class _Merge:
    """Mask-weighted sums of a step's windows; `finish` writes D_s and G_s to the estimate."""

    def __init__(self, estimate: Estimate):
        self.estimate = estimate
        self.depth = torch.zeros_like(estimate.depth, dtype=torch.float32)
        self.edges = torch.zeros_like(self.depth)
        self.weight = torch.zeros_like(self.depth)

    def add(self, window: Window, depth: torch.Tensor, edges: torch.Tensor) -> None:
        mask = torch.from_numpy(blend_mask(window, *self.depth.shape)).to(self.depth.device)
        rows, cols = window.slices
        self.depth[rows, cols] += mask * depth
        self.edges[rows, cols] += mask * edges
        self.weight[rows, cols] += mask

    def finish(self) -> None:
        self.estimate.depth = self.depth / self.weight
        self.estimate.edges = self.edges / self.weight


def _cached(window_highs: Sequence[Sequence], step: int, count: int) -> Sequence:
    """Step `step`'s cached window predictions, checked: one H×W map per window."""
    given = window_highs[step - 1] if len(window_highs) >= step else []
    if len(given) != count:
        raise InputError(f"window_highs: step {step} needs {count} cached window predictions, "
                         f"got {len(given)}")
    for index, high in enumerate(given):
        if np.ndim(high) != 2:
            raise InputError(f"window_highs[{step - 1}][{index}]: expected an H×W map, got "
                             f"shape {tuple(np.shape(high))}")
    return given


def _prediction(high: np.ndarray | torch.Tensor, device: torch.device) -> torch.Tensor | None:
    """A window prediction as a float32 tensor on `device`, or None if it is flat."""
    high = torch.as_tensor(np.asarray(high, np.float32) if isinstance(high, np.ndarray)
                           else high, dtype=torch.float32, device=device)
    finite = _finite_values(high)
    scale = float(finite.abs().max()) if finite.numel() else 0.0
    return None if _is_flat(high, scale) else high


def _is_flat(depth: torch.Tensor, scale: float) -> bool:
    """Numerically constant: its finite values span at most FLAT_TOLERANCE × `scale`."""
    finite = _finite_values(depth)
    if finite.numel() == 0:
        return True
    low, high = torch.aminmax(finite)
    return float(high - low) <= FLAT_TOLERANCE * scale


def _finite_values(depth: torch.Tensor) -> torch.Tensor:
    """The finite values of `depth` (the map itself when all are: no copy, as is usual)."""
    finite = torch.isfinite(depth)
    return depth if bool(finite.all()) else depth[finite]
