"""Training scenes and their predictions, made once and kept on disk (both are costly).

An entry is one safetensors file: the ground-truth depth and valid mask (float32, bool) and the
low and high predictions on the same grid (float16: their errors are far above its 1e-3
rounding), with the `PredictorDraw` in the metadata. Entries live in a folder named after a
hash of everything that shapes them (scene size, degradation ranges, format), so a changed
config never reuses stale predictions and runs with the same data share one cache. Each entry
is written atomically and its content depends only on its source and that spec, so a killed
build resumes where it stopped and any number of workers give the same files.

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
from training.config import DataConfig
from training.data.inputs import PredictorDraw, draw_predictor, make_predictions
from training.data.scenes import render_scene

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


def procedural_sources(first_seed: int, count: int) -> list[Source]:
    return [Source(f"procedural-{seed:07d}", seed=seed)
            for seed in range(first_seed, first_seed + count)]


def folder_sources(folder: str | Path) -> tuple[list[Source], list[tuple[str, str]]]:
    """One source per complete sample of a folder dataset, and (name, reason) of the rest."""
    dataset = DepthFolder(folder, skip_incomplete=True)
    sources = [Source(f"folder-{name}", folder=str(folder), index=index)
               for index, name in enumerate(dataset.names)]
    return sources, dataset.incomplete


def cache_folder(root: str | Path, data: DataConfig) -> Path:
    """The folder under `root` for entries made with `data`'s scene size and degradations."""
    spec = {"format": FORMAT_VERSION, "size": [data.scene_height, data.scene_width],
            "crop": data.crop, "degradation": asdict(data.degradation)}
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
        draw = PredictorDraw(**json.loads(handle.metadata()["draw"]))
    return Entry(arrays["depth"], arrays["valid"].astype(bool), arrays["low"].astype(np.float32),
                 arrays["high"].astype(np.float32), draw)


def read_crop(path: Path, top: int, left: int, size: int) -> dict[str, np.ndarray]:
    """The size × size window at (top, left) of every map of an entry, read without loading
    the rest (safetensors slices); maps as float32, `valid` as bool."""
    rows, cols = slice(top, top + size), slice(left, left + size)
    with safe_open(str(path), framework="pt") as handle:
        crop = {key: handle.get_slice(key)[rows, cols] for key in ("depth", "valid", "low", "high")}
    return {key: (value.numpy().astype(bool) if key == "valid" else value.float().numpy())
            for key, value in crop.items()}


def entry_shape(path: Path) -> tuple[int, int]:
    with safe_open(str(path), framework="pt") as handle:
        height, width = handle.get_slice("depth").get_shape()
    return height, width


def _make_entry(job: tuple[Path, Source, DataConfig]) -> tuple[str, str | None]:
    """Write one entry; (name, None) when written, (name, reason) when the source is unusable."""
    folder, source, data = job
    try:
        depth, valid, key = _ground_truth(source, data)
    except InputError as error:
        return source.name, str(error)
    rng = np.random.default_rng(np.random.SeedSequence(key))
    draw = draw_predictor(rng, data.degradation)
    low, high = make_predictions(depth, valid, draw, rng, data.degradation)
    tensors = {"depth": np.where(valid, depth, 0).astype(np.float32),
               "valid": valid.astype(np.uint8),
               "low": low.astype(np.float16), "high": high.astype(np.float16)}
    blob = serialize(tensors, {"draw": json.dumps(asdict(draw))})
    with atomic_output(folder / f"{source.name}.safetensors") as tmp:
        tmp.write_bytes(blob)
    return source.name, None


def _ground_truth(source: Source, data: DataConfig) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """(depth, valid, seed entropy) of a source; `InputError` when it cannot train."""
    if source.seed is not None:
        scene = render_scene(source.seed, data.scene_height, data.scene_width)
        return scene.depth, scene.valid, [0, source.seed]
    sample = _folder(source.folder)[source.index]
    if min(sample.depth.shape) < data.crop:
        raise InputError(f"{sample.name}: {sample.depth.shape[1]}x{sample.depth.shape[0]} is "
                         f"smaller than the {data.crop} px training crop")
    if sample.valid.sum() < 0.5 * sample.valid.size:
        raise InputError(f"{sample.name}: under half of its ground truth is valid")
    return sample.depth, sample.valid, [1, zlib.crc32(sample.name.encode())]


@functools.lru_cache(maxsize=4)
def _folder(root: str) -> DepthFolder:
    """A folder dataset listed once per process, not once per sample."""
    return DepthFolder(root, skip_incomplete=True)


def _readable(path: Path) -> bool:
    try:
        with safe_open(str(path), framework="np") as handle:
            return "draw" in (handle.metadata() or {})
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

