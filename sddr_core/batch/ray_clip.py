"""`sddr refine CLIP --engine ray`: a clip's predictor runs spread over a Ray cluster, its
refinement kept in one process.

In clip mode the predictor dominates (two Depth Anything runs a frame, seconds each on a CPU)
and each frame's runs depend on that frame alone, while N_r and `ClipState` are cheap but
chained: each frame's state is the previous frame's output (decisions 230–231). So a pool of
Ray actors, each holding the predictor for the whole job, predicts the frames in parallel,
and the caller gets them back in frame order and refines them one after the other with one
`ClipState`, exactly as one process does (decision 310).

The caller decodes the clip and sends each frame to an actor through Ray's object store (a
frame, never the video, travels; decision 311). At most `AHEAD` frames per actor are in
flight, so memory does not grow with the clip's length.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np

from ..errors import SddrError
from ..files.video import DamagedClip, Frame
from ..inference.coarse_to_fine import whole_image_inputs
from ..inference.resolution import RESOLUTION_CAP, check_cap
from ..predictors import DepthPredictor, as_rgb, load_predictor
from ..runtime import resolve_device
from .ray_cluster import (
    RETRIES,
    check_retries,
    import_ray,
    last_line,
    ray_session,
    start_pool,
    use_assigned_cpus,
)

AHEAD = 2
"""Frames in flight per actor: one running, one waiting, so an actor never idles for its next
frame's trip; the caller holds at most this many frames per actor besides the one it refines."""


class ClipPredictors:
    """A pool of Ray actors each holding `predictor` (a name, a model folder's path as the
    workers see it, or a picklable `DepthPredictor`); use as a context manager, then
    `predictions(frames)`.

    Parameters
    ----------
    device
        Where each actor runs the predictor ("auto": its GPU when Ray gave it one).
    address
        The cluster to join (`ray://…` or `HOST:PORT`); None starts a local Ray for the job,
        unless this process already called `ray.init`, whose cluster is then used.
    workers
        Actors in the pool (default: one per GPU when `device` is not "cpu" and the cluster
        has GPUs, else one per CPU); CPUs are shared out among them.
    retries
        Attempts after the first at a frame whose actor died (it is restarted each time).
    resolution_cap
        No predictor run above this multiple of the frame's long side (None: Eq. 11 alone).

    Raises
    ------
    InputError
        `retries` is not a whole number ≥ 0, or `resolution_cap` no number > 0.
    SddrError
        Ray is not installed, or the actors cannot load the predictor (on entering).
    """

    def __init__(self, predictor: str | DepthPredictor, *, device: str = "auto",
                 address: str | None = None, workers: int | None = None,
                 retries: int = RETRIES, resolution_cap: float | None = RESOLUTION_CAP
                 ) -> None:
        self.ray = import_ray()
        self.predictor, self.device, self.address = predictor, device, address
        self.resolution_cap = check_cap(resolution_cap)
        self.workers, self.retries = workers, check_retries(retries)
        self.actors: list[Any] = []
        self.polarity = ""
        """The predictor's polarity ("disparity" or "depth"), known once the pool runs."""

    def __enter__(self) -> ClipPredictors:
        ray = self.ray
        self._session = ray_session(ray, self.address)
        self._started = self._session.__enter__()
        try:
            self.actors = start_pool(ray, _FramePredictor, self.device, self.workers,
                                     self.retries, self.predictor, self.device,
                                     self.resolution_cap)
            # a predictor that does not load fails each try: once is enough
            (self.polarity, *_) = ray.get([a.polarity.options(max_task_retries=0).remote()
                                           for a in self.actors])
        except ray.exceptions.RayError as err:
            self.__exit__(None, None, None)
            raise SddrError(f"the Ray workers cannot load predictor {self.predictor}: "
                            f"{last_line(err)}") from None
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exception) -> None:
        if not self._started:  # the cluster of an earlier ray.init outlives the pool
            for actor in self.actors:
                self.ray.kill(actor)
        self.actors = []
        self._session.__exit__(*exception)

    def predictions(self, frames: Iterable[Frame], *, skip: int = 0) -> Iterator[Frame]:
        """`frames` in order, each from index `skip` on with its data replaced by the
        predictor's (low, high, (H, W) of the frame) for `Refiner.refine_clip`; the frames
        before `skip` (finished by an earlier run) pass through unpredicted.

        When the source raises `DamagedClip`, the frames read before the damage come back
        first, then the error; a frame whose prediction fails raises SddrError naming it.
        """
        pending: deque[tuple[Frame, Any]] = deque()
        sent = 0
        try:
            for frame in frames:
                if frame.index < skip:
                    yield frame
                    continue
                actor = self.actors[sent % len(self.actors)]
                pending.append((frame, actor.predict.remote(frame.index, frame.data)))
                sent += 1
                if len(pending) > AHEAD * len(self.actors):
                    yield self._predicted(*pending.popleft())
        except DamagedClip:
            while pending:
                yield self._predicted(*pending.popleft())
            raise
        while pending:
            yield self._predicted(*pending.popleft())

    def _predicted(self, frame: Frame, result: Any) -> Frame:
        ray = self.ray
        try:
            low, high, size = ray.get(result)
        except ray.exceptions.RayTaskError as err:
            cause = err.cause
            why = cause if isinstance(cause, SddrError) else f"{type(cause).__name__}: {cause}"
            raise SddrError(f"{frame.source}: {why}") from None
        except ray.exceptions.RayActorError as err:
            raise SddrError(f"{frame.source}: its worker died on each of {self.retries + 1} "
                            f"attempts ({last_line(err)})") from None
        # Ray hands arrays back read-only (they are the object store's); torch wants to own them
        return Frame(frame.index, frame.time, (low.copy(), high.copy(), size), frame.source)


class _FramePredictor:
    """A Ray actor: the predictor, loaded once; the whole-image (low, high) of each frame."""

    def __init__(self, predictor: str | DepthPredictor, device: str,
                 resolution_cap: float | None) -> None:
        use_assigned_cpus()
        self.predictor = load_predictor(predictor, device=resolve_device(device))
        self.resolution_cap = resolution_cap

    def polarity(self) -> str:
        return self.predictor.polarity

    def predict(self, index: int, image: np.ndarray
                ) -> tuple[np.ndarray, np.ndarray, tuple[int, int]]:
        rgb = as_rgb(image, f"frame {index}")
        low, high = whole_image_inputs(self.predictor, rgb, self.resolution_cap)
        return low, high, rgb.shape[:2]
