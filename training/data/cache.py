"""Training scenes and their predictions, made once and kept on disk (both are costly).

An entry is one safetensors file: the ground-truth depth and valid mask (float32, bool), the
low and high predictions on the same grid (float16: their errors are far above its 1e-3
rounding) and, when a real predictor made them, the RGB image (label refreshes show it the
windows); the `PredictorDraw` and the predictions' polarity are in the metadata. Entries live
in a folder named after a hash of everything that shapes them (scene size, crop,
degradations, predictor, format), so a changed config never reuses stale predictions and runs
with the same data share one cache. Each entry is written atomically and its content depends
only on its source and that spec, so a killed build resumes where it stopped and any number
of workers give the same files.

Sources are procedural scenes (by seed) and the samples of a folder dataset in the layout
`sddr eval` reads. A folder sample that is missing, unreadable, too small or without valid
depth is logged, counted and skipped; the run goes on with the rest.
"""

from __future__ import annotations

import concurrent.futures
import functools
import hashlib
import json
import logging
import multiprocessing
import zlib
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open
from safetensors.numpy import save as serialize

from sddr_core.errors import InputError
from sddr_core.evaluation.datasets import DepthFolder
from sddr_core.files.atomic import atomic_output
from sddr_core.predictors.base import DepthPredictor
from sddr_core.predictors.huggingface import load_predictor
from sddr_core.scenes import render_scene
from training.config import DataConfig
from training.data.inputs import PredictorDraw, draw_predictor, make_predictions, on_grid

FORMAT_VERSION = 1
log = logging.getLogger("training")


@dataclass(frozen=True)
class Source:
    """Where an entry's ground truth comes from: a procedural seed or a folder sample."""

    name: str
    """The entry's file stem: "procedural-0000042" or "folder-<stem>"."""
    seed: int | None = None
    folder: str | None = None
    index: int | None = None
    """The sample's index in `DepthFolder(folder)`."""


@dataclass(frozen=True, eq=False)
class Entry:
    """A cached scene: ground truth and the two predictions, all (H, W) on one grid."""

    depth: np.ndarray
    valid: np.ndarray
    low: np.ndarray
    high: np.ndarray
    draw: PredictorDraw
    polarity: str = "disparity"
    """The predictions' polarity: "disparity" (the simulator's; near = large) or "depth"."""
    image: np.ndarray | None = None
    """H × W × 3 uint8 RGB, kept when a real predictor made the predictions."""


def procedural_sources(first_seed: int, count: int) -> list[Source]:
    return [Source(f"procedural-{seed:07d}", seed=seed)
            for seed in range(first_seed, first_seed + count)]


def folder_sources(folder: str | Path) -> tuple[list[Source], list[tuple[str, str]]]:
    """One source per complete sample of a folder dataset, and (name, reason) of the rest."""
    dataset = _folder(str(folder))
    sources = [Source(f"folder-{name}", folder=str(folder), index=index)
               for index, name in enumerate(dataset.names)]
    return sources, dataset.incomplete


def cache_folder(root: str | Path, data: DataConfig) -> Path:
    """The folder under `root` for entries made with `data`'s scene size and degradations.
    A degradation left at null (an option that changes nothing) is not part of the name, so
    adding such an option keeps the caches made before it."""
    degradation = {key: value for key, value in asdict(data.degradation).items()
                   if value is not None}
    spec = {"format": FORMAT_VERSION, "size": [data.scene_height, data.scene_width],
            "crop": data.crop, "degradation": degradation, "predictor": data.predictor}
    digest = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:12]
    return Path(root) / f"scenes-{digest}"


def build_cache(folder: Path, sources: Sequence[Source], data: DataConfig, workers: int = 0,
                progress: Callable[[int, int], None] | None = None
                ) -> tuple[list[Path], list[tuple[str, str]]]:
    """Make every missing entry of `sources` in `folder`; return the usable entries' paths in
    `sources`' order and (name, reason) of each source skipped.

    `workers` processes make entries in parallel (0: in this process). An entry already on
    disk and readable is kept.
    """
    folder.mkdir(parents=True, exist_ok=True)
    todo = [source for source in sources if not _readable(folder / f"{source.name}.safetensors")]
    skipped: dict[str, str] = {}
    jobs = [(folder, source, data) for source in todo]
    if workers and len(jobs) > 1:
        context = multiprocessing.get_context("spawn")  # no forked torch thread pools
        with concurrent.futures.ProcessPoolExecutor(workers, mp_context=context,
                                                    initializer=_one_thread) as pool:
            results = pool.map(_make_entry, jobs, chunksize=4)
            for done, (name, reason) in enumerate(results, 1):
                _note(skipped, name, reason, done, len(jobs), progress)
    else:
        for done, job in enumerate(jobs, 1):
            _note(skipped, *_make_entry(job), done, len(jobs), progress)
    paths = [folder / f"{source.name}.safetensors" for source in sources
             if source.name not in skipped]
    return paths, list(skipped.items())


def read_entry(path: Path) -> Entry:
    """The whole entry at `path` (float32 maps)."""
    with safe_open(str(path), framework="np") as handle:
        arrays = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118 (safe_open is not a dict)
        metadata = handle.metadata()
    return Entry(arrays["depth"], arrays["valid"].astype(bool), arrays["low"].astype(np.float32),
                 arrays["high"].astype(np.float32), PredictorDraw(**json.loads(metadata["draw"])),
                 metadata["polarity"], arrays.get("image"))


def read_crop(path: Path, top: int, left: int, size: int) -> tuple[dict[str, np.ndarray], str]:
    """The size × size window at (top, left) of every map of an entry, read without loading
    the rest (safetensors slices), as float32 (`valid` as bool); and the polarity."""
    rows, cols = slice(top, top + size), slice(left, left + size)
    with safe_open(str(path), framework="pt") as handle:
        crop = {key: handle.get_slice(key)[rows, cols] for key in ("depth", "valid", "low", "high")}
        polarity = handle.metadata()["polarity"]
    return {key: (value.numpy().astype(bool) if key == "valid" else value.float().numpy())
            for key, value in crop.items()}, polarity


def entry_shape(path: Path) -> tuple[int, int]:
    with safe_open(str(path), framework="pt") as handle:
        height, width = handle.get_slice("depth").get_shape()
    return height, width


def _make_entry(job: tuple[Path, Source, DataConfig]) -> tuple[str, str | None]:
    """Write one entry; (name, None) when written, (name, reason) when the source is unusable."""
    folder, source, data = job
    try:
        depth, valid, image, key = _ground_truth(source, data)
    except InputError as error:
        return source.name, str(error)
    rng = np.random.default_rng(np.random.SeedSequence(key))
    draw = draw_predictor(rng, data.degradation)
    tensors = {"depth": np.where(valid, depth, 0).astype(np.float32),
               "valid": valid.astype(np.uint8)}
    if image is not None and data.predictor != "simulated":
        predictor = real_predictor(data.predictor)
        low, high = (predictor.predict(image, resolution) for resolution in
                     (draw.low_resolution, draw.high_resolution))
        low, high = on_grid(low, depth.shape), on_grid(high, depth.shape)
        tensors["image"], polarity = image, predictor.polarity
    else:
        low, high = make_predictions(depth, valid, draw, rng, data.degradation)
        polarity = "disparity"
    tensors.update(low=low.astype(np.float16), high=high.astype(np.float16))
    blob = serialize(tensors, {"draw": json.dumps(asdict(draw)), "polarity": polarity})
    with atomic_output(folder / f"{source.name}.safetensors") as tmp:
        tmp.write_bytes(blob)
    return source.name, None


def _ground_truth(source: Source, data: DataConfig
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, list[int]]:
    """(depth, valid, RGB or None, seed entropy) of a source; `InputError` when it cannot
    train."""
    if source.seed is not None:
        scene = render_scene(source.seed, data.scene_height, data.scene_width)
        return scene.depth, scene.valid, None, [0, source.seed]
    sample = _folder(source.folder)[source.index]
    if min(sample.depth.shape) < data.crop:
        raise InputError(f"{sample.name}: {sample.depth.shape[1]}x{sample.depth.shape[0]} is "
                         f"smaller than the {data.crop} px training crop")
    if sample.valid.sum() < 0.5 * sample.valid.size:
        raise InputError(f"{sample.name}: under half of its ground truth is valid")
    return sample.depth, sample.valid, sample.image, [1, zlib.crc32(sample.name.encode())]


@functools.lru_cache(maxsize=1)
def real_predictor(name: str) -> DepthPredictor:
    """The named predictor, loaded once per process (from the Hugging Face cache at its pinned
    revision, downloaded once if missing)."""
    return load_predictor(name)


@functools.lru_cache(maxsize=4)
def _folder(root: str) -> DepthFolder:
    """A folder dataset listed once per process, not once per sample."""
    return DepthFolder(root, skip_incomplete=True)


def _readable(path: Path) -> bool:
    try:
        with safe_open(str(path), framework="np") as handle:
            return "polarity" in (handle.metadata() or {})
    except Exception:  # missing, truncated or not safetensors: make it again
        return False


def _note(skipped: dict[str, str], name: str, reason: str | None, done: int, total: int,
          progress: Callable[[int, int], None] | None) -> None:
    if reason is not None:
        log.warning("skipped %s: %s", name, reason)
        skipped[name] = reason
    if progress is not None:
        progress(done, total)


def _one_thread() -> None:
    """Worker processes share the cores: one torch thread each."""
    torch.set_num_threads(1)

