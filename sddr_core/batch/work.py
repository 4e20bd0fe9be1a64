"""Refining one item of a batch job, with models loaded once per process.

`sddr refine`'s own loop and each Ray worker hold one `ItemRefiner`, so the models load once
per process, not once per item, and both engines write byte-identical files.
"""

from __future__ import annotations

from pathlib import Path

from .. import __version__
from ..files.depth_io import read_depth, read_image, write_depth
from ..files.sidecar import PREDICTED_UNITS, write_depth_with_meaning
from ..inference.coarse_to_fine import Progress
from ..inference.refiner import load_refiner
from ..maps.edge_snap import snap_edges
from ..predictors.base import DepthPredictor
from .job import Item, RefineSettings


class ItemRefiner:
    """The refiner (and, for photos, the predictor) of one process; call it on an item to
    refine it and write its files atomically.

    Raises what reading, refining and writing raise (`InputError` for a corrupt file or
    mismatched sizes); nothing is left at an output path when it does.
    """

    def __init__(self, settings: RefineSettings, predictor: DepthPredictor | None = None) -> None:
        """`predictor`: an object to run instead of loading `settings.predictor`, which then
        only names it in the sidecars."""
        from ..inference.pipeline import DepthPipeline
        from ..predictors import huggingface  # looked up when called, so tests can stand in

        self.settings = settings
        self.refiner = load_refiner(settings.weights, device=settings.device,
                                    dtype=settings.dtype)
        self.pipeline = None
        if settings.kind == "photos":
            if predictor is None:
                predictor = huggingface.load_predictor(settings.predictor,
                                                       device=self.refiner.device)
            self.pipeline = DepthPipeline(self.refiner, predictor,
                                          resolution_cap=settings.resolution_cap)

    def __call__(self, item: Item, progress: Progress | None = None) -> list[Path]:
        """Refine `item` and write its outputs; the files written, the edge file first.
        `progress(done, total)` is called after each network pass."""
        if self.pipeline is None:
            return [self._pair(item)]
        return self._photo(item, progress)

    def _pair(self, item: Item) -> Path:
        """Low and high maps, and optionally the photo they are of, whose colours then snap
        the refined edges (unless `snap_edges` is off)."""
        settings = self.settings
        low, high = (read_depth(path) for path in item.inputs[:2])
        photo = read_image(item.inputs[2]) if len(item.inputs) > 2 else None
        refined = self.refiner.refine(low, high, out_size=settings.out_size)
        if photo is not None and settings.snap_edges:
            refined = snap_edges(refined, photo)
        # the refined map is in the inputs' polarity and units, which sddr is not told
        path, _ = write_depth_with_meaning(item.outputs[0], refined, settings.format, kind=None,
                                           units=None, written_by=f"sddr refine {__version__}")
        return path

    def _photo(self, item: Item, progress: Progress | None) -> list[Path]:
        settings, pipeline = self.settings, self.pipeline
        image = read_image(item.inputs[0])
        written = []
        if settings.edges:
            depth, edges = pipeline(image, mode="two-stage", steps=settings.steps,
                                    progress=progress, return_edges=True,
                                    snap_edges=settings.snap_edges)
            written.append(write_depth(item.outputs[1], edges, "png16"))
        else:
            depth = pipeline(image, mode=settings.mode, steps=settings.steps, progress=progress,
                             snap_edges=settings.snap_edges)
        polarity = pipeline.predictor.polarity
        path, _ = write_depth_with_meaning(
            item.outputs[0], depth, settings.format, kind=polarity,
            units=PREDICTED_UNITS[polarity],
            written_by=f"sddr refine {__version__} ({settings.predictor})")
        return [*written, path]
