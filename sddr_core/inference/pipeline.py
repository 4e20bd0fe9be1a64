"""Photo → refined depth: `DepthPipeline(refiner, predictor)(image, mode=...)`.

The pipeline owns the predictor runs (whole image at r̂ and at Eq. 11's resolution, then one
prediction per window) and hands each (low, high) pair to the single-pass `Refiner`; the
coarse-to-fine machinery is in `coarse_to_fine`. As in diffusers, the model (`Refiner`) and the
pipeline over it are separate objects, so nothing below imports the pipeline.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator, Sized

import numpy as np
import torch

from ..errors import InputError
from ..maps import edge_snap
from ..predictors import DepthPredictor, as_rgb, load_predictor
from .clip import ClipState
from .coarse_to_fine import Cancel, Cancelled, CoarseToFine, Progress
from .refiner import Refiner, load_refiner
from .resolution import RESOLUTION_CAP, check_cap
from .windows import STEPS

MODES = ("one-stage", "two-stage")
PredictorLike = DepthPredictor | str | Callable[[np.ndarray, int], np.ndarray]


class DepthPipeline:
    """A depth predictor N_d and a refiner N_r, run together on photos.

    `predictor`: a `DepthPredictor`, a name of `sddr_core.predictors.PREDICTORS` (loaded once,
    here) or a callable `fn(image, resolution) -> depth`. `resolution_cap`: no predictor run's
    long side exceeds this multiple of the long side of what it predicts, the photo or a window;
    None (the default, decision 280) leaves Eq. 11 uncapped.
    """

    def __init__(self, refiner: Refiner, predictor: PredictorLike, *,
                 resolution_cap: float | None = RESOLUTION_CAP):
        self.refiner = refiner
        self.resolution_cap = check_cap(resolution_cap)
        self.predictor = load_predictor(predictor, device=refiner.device)

    @classmethod
    def from_pretrained(
        cls,
        weights: str | os.PathLike = "default",
        predictor: PredictorLike = "depth-anything-v2-small",
        device: str = "auto",
        dtype: str = "auto",
    ) -> DepthPipeline:
        """Load the refiner weights (bundled name, path or hf://…@revision) and the predictor."""
        return cls(load_refiner(weights, device=device, dtype=dtype), predictor)

    def __call__(
        self,
        image: np.ndarray,
        mode: str = "one-stage",
        steps: int = STEPS,
        progress: Progress | None = None,
        cancel: Cancel | None = None,
        return_edges: bool = False,
        inputs: tuple[np.ndarray, np.ndarray] | None = None,
        snap_edges: bool = True,
        clip: bool = False,
    ) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        """Refined depth of an RGB image (H×W float32, in the predictor's polarity).

        "one-stage" fuses a prediction at the predictor's training resolution with one at
        Eq. 11's; "two-stage" then refines (s+1)² windows per step s = 1..`steps`.
        `progress(done, total)` is called after each network pass; `cancel()` is polled
        between them and, if true, raises `Cancelled`. `return_edges=True` (two-stage) returns
        (depth, G_S) from the same run. `inputs`: the whole image's (low, high) predictions,
        used for the first pass instead of running the predictor (so a one-stage and a
        two-stage run can start from the same inputs). `snap_edges` puts the pixels of the
        depth's ramps onto the nearer or farther side of their step, by the photo's colours
        (`sddr_core.maps.edge_snap`; on by default, decision 322); G_S is the unsnapped
        run's. `clip=True` takes B×H×W×3 frames of one clip and returns their B×H×W depth
        refined as a clip (one-stage only; see `frames`).
        """
        if not isinstance(clip, bool):
            raise InputError(f"clip {clip!r}: must be True or False")
        if clip:
            if mode != "one-stage" or return_edges or inputs is not None:
                raise InputError("clip=True runs one-stage on the frames' own predictions: "
                                 "leave mode, return_edges and inputs at their defaults")
            if not (isinstance(image, np.ndarray) and image.ndim == 4):
                raise InputError(f"image: clip=True needs B×H×W×3 frames, got "
                                 f"{getattr(image, 'shape', type(image).__name__)}")
            return np.stack(list(self.frames(image, progress=progress, cancel=cancel,
                                             snap_edges=snap_edges)))
        if mode not in MODES:
            raise InputError(f"mode {mode!r}: choose from {', '.join(MODES)}")
        if return_edges and mode != "two-stage":
            raise InputError("return_edges needs mode='two-stage' (G_S comes from the "
                             "coarse-to-fine steps)")
        if not isinstance(snap_edges, bool):
            raise InputError(f"snap_edges {snap_edges!r}: must be True or False")
        rgb = as_rgb(image)
        if mode == "one-stage":
            depth = self._run(progress, cancel).one_stage(rgb, inputs=inputs)
            return self._snapped(depth, rgb) if snap_edges else depth
        depth, edges = self.depth_and_edges(rgb, steps, progress, cancel, inputs)
        depth = self._snapped(depth, rgb) if snap_edges else depth
        return (depth, edges) if return_edges else depth

    def frames(self, frames: Iterable[np.ndarray], *, state: ClipState | None = None,
               progress: Progress | None = None, cancel: Cancel | None = None,
               snap_edges: bool = True) -> Iterator[np.ndarray]:
        """Refined depth (H×W) of each RGB frame of one clip, in order, one at a time.

        One-stage per frame, with the refiner's clip mode (`Refiner.refine_clip`) joining
        the frames; memory holds one frame and the `state`, whatever the clip's length. Pass
        a `state` to continue a clip refined in pieces. `progress(done, total)` is called
        after each frame, total being len(frames), or 0 for an iterator of unknown length;
        `cancel()` is polled before each frame and, if true, raises `Cancelled` (the frames
        yielded so far are complete). Frames must all have the first one's size. `snap_edges`
        snaps each frame to its photo, as `__call__` does.
        """
        total = len(frames) if isinstance(frames, Sized) else 0
        state = ClipState() if state is None else state
        run = self._run(None, None)
        size = None
        for index, frame in enumerate(frames):
            if cancel is not None and cancel():
                raise Cancelled(f"clip refinement cancelled after {index} frames")
            rgb = as_rgb(frame, f"frame {index}")
            size = size or rgb.shape[:2]
            if rgb.shape[:2] != size:
                raise InputError(f"frame {index}: {rgb.shape[0]}×{rgb.shape[1]}, but the "
                                 f"clip's frames are {size[0]}×{size[1]}")
            (depth,) = self.refiner.refine_clip([run.whole_image_inputs(rgb)], size,
                                                state=state)
            yield self._snapped(depth, rgb) if snap_edges else depth
            if progress is not None:
                progress(index + 1, total)

    def edges(self, image: np.ndarray, steps: int = STEPS, progress: Progress | None = None,
              cancel: Cancel | None = None) -> np.ndarray:
        """G_S: the coarse-to-fine depth-edge map that self-distillation trains on."""
        return self.depth_and_edges(image, steps, progress, cancel)[1]

    def depth_and_edges(self, image: np.ndarray, steps: int = STEPS,
                        progress: Progress | None = None,
                        cancel: Cancel | None = None,
                        inputs: tuple[np.ndarray, np.ndarray] | None = None
                        ) -> tuple[np.ndarray, np.ndarray]:
        """(D_S, G_S) of a two-stage run with `steps` coarse-to-fine steps, D_S unsnapped."""
        if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
            raise InputError(f"steps {steps!r}: two-stage needs a whole number ≥ 1")
        return self._run(progress, cancel).two_stage(as_rgb(image), steps, inputs)

    def _snapped(self, depth: np.ndarray, rgb: np.ndarray) -> np.ndarray:
        """`depth` snapped to the photo's edges, on the refiner's device."""
        device = self.refiner.device
        snapped = edge_snap.snap_edges(torch.from_numpy(depth).to(device),
                                       torch.from_numpy(rgb).to(device))
        return snapped.cpu().numpy()

    def _run(self, progress: Progress | None, cancel: Cancel | None) -> CoarseToFine:
        return CoarseToFine(self.refiner, self.predictor, progress, cancel,
                            self.resolution_cap)
