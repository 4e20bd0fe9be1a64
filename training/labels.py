"""G_S for phase 2: the current model's coarse-to-fine edge maps of the scenes it trains on next.

Self-distillation remakes its pseudo-labels from the model being trained (method.md §3.1).
Every `schedule.label_refresh` steps the scenes of the next pool (`Schedule.label_pool`) are
labelled by `sddr_core.inference.labels.edge_labels` with S = `schedule.label_steps`, from what
the network sees and never from the exact depth (issue 25): the whole-image pass on the cached
low and high predictions, the training inputs themselves, then S steps whose window high
inputs were made as those were, by the scene's simulated predictor shown only the window, at
Eq. 11's resolution, with the training degradations (`window_inputs`). They are made once per
scene and kept beside its cache entry, so a label refresh reads no ground truth. A folder
sample whose inputs a real predictor made has its windows predicted by that predictor on the
window's RGB. `schedule.labels: ground_truth` gives instead the ground truth's own gradients
(`gradient_labels`), the upper bound that self-distillation is measured against.

The labels are written to the run folder, one float16 file per scene, so a run resumed between
two refreshes trains on exactly the labels the uninterrupted run had (the model that made them
is gone by then), and each process labels its share of the pool.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from safetensors.numpy import load_file as load_arrays
from safetensors.numpy import save_file as save_arrays
from safetensors.torch import load_file, save_file

from sddr_core.files.atomic import atomic_output
from sddr_core.inference.edges import initial_edges
from sddr_core.inference.labels import LabelSample, edge_labels
from sddr_core.inference.resolution import window_resolutions
from sddr_core.inference.windows import step_windows
from sddr_core.maps.inputs import nearest_fill
from sddr_core.network import RefinementNetwork
from sddr_core.predictors.base import DepthPredictor
from sddr_core.predictors.simulated import normalised_disparity
from training.config import DegradationConfig
from training.data.augment import FLIPS
from training.data.cache import Entry, read_entry
from training.data.inputs import degraded_prediction

_WINDOWS = 5
"""Stream tag of the label windows' degradations, apart from the cache's entry streams."""


def label_folder(run_dir: Path, refresh: int) -> Path:
    return run_dir / "labels" / f"refresh-{refresh:04d}"


def make_labels(model: RefinementNetwork, entries: Sequence[Path], pool: Sequence[int],
                steps: int, folder: Path, rank: int = 0, world: int = 1,
                progress: Callable[[int, int], None] | None = None,
                predictor: DepthPredictor | None = None, *,
                degradation: DegradationConfig,
                source: Literal["self", "ground_truth"] = "self") -> None:
    """Write G_S of this process's share of `pool` (scene indices into `entries`) to `folder`,
    skipping scenes already labelled there (a refresh interrupted by a kill). A scene cached
    with its RGB has its windows predicted by `predictor` (the real one that made its
    inputs); the others take theirs from `window_inputs`, made with `degradation` (the run's
    `data.degradation`). `source` "ground_truth" writes `gradient_labels` instead."""
    folder.mkdir(parents=True, exist_ok=True)
    share = list(pool)[rank::world]
    for done, scene in enumerate(share, 1):
        path = folder / f"{scene:07d}.safetensors"
        if not path.exists():
            entry = read_entry(entries[scene])
            if source == "ground_truth":
                edges = gradient_labels(entry)
            elif entry.image is not None and predictor is not None:
                sample = LabelSample(entry.low, entry.high, image=entry.image)
                edges = edge_labels(model, [sample], steps, predictor)[0][1]
            else:
                windows = window_inputs(entries[scene], entry, steps, degradation)
                sample = LabelSample(entry.low, entry.high, windows, size=entry.low.shape)
                edges = edge_labels(model, [sample], steps)[0][1]
            with atomic_output(path) as tmp:
                save_file({"edges": edges.to("cpu", torch.float16).contiguous()}, str(tmp))
        if progress is not None:
            progress(done, len(share))


def window_inputs(entry_path: Path, entry: Entry, steps: int,
                  degradation: DegradationConfig) -> list[list[np.ndarray]]:
    """The high input of each window of steps 1..`steps` (`[s − 1][k]`, window k of
    `step_windows`, on the window's grid, float32), read from
    `<entry>.windows-<steps>.safetensors` beside the cache entry, or made and written there.

    Made as the cached high input was (`inputs.degraded_prediction`): the entry's simulated
    predictor shown only the window, the high input's degradations, seeded by the entry's
    draw. Eq. 11's resolutions take the cached high input as D_{s−1}, which does not exist
    until a model refines the scene: the inputs must not depend on the model being trained.
    """
    path = entry_path.with_name(f"{entry_path.stem}.windows-{steps}.safetensors")
    if steps and not path.exists():
        predictor = entry.draw.predictor(entry.depth, entry.valid)
        base = torch.from_numpy(entry.high)
        maps = {}
        for step in range(1, steps + 1):
            windows = step_windows(*entry.high.shape, step)
            resolutions = window_resolutions(base, windows, predictor.training_resolution,
                                             predictor.gradient_prior)
            rng = np.random.default_rng([entry.draw.seed, _WINDOWS, step])
            for index, (window, resolution) in enumerate(zip(windows, resolutions, strict=True)):
                maps[f"{step}-{index}"] = degraded_prediction(
                    predictor, resolution, rng, degradation.for_high_input(),
                    (window.height, window.width), window.region).astype(np.float16)
        with atomic_output(path) as tmp:
            save_arrays(maps, str(tmp))
    arrays = load_arrays(str(path)) if steps else {}
    return [[arrays[f"{step}-{index}"].astype(np.float32) for index in range((step + 1) ** 2)]
            for step in range(1, steps + 1)]


def gradient_labels(entry: Entry) -> torch.Tensor:
    """∇GT labels (H × W float32): the ground truth in its inputs' polarity (normalised
    disparity, or depth), holes filled from the nearest valid pixel, through `initial_edges`
    as D0 is for G0, so only the map differs from self-distillation's G_0."""
    if entry.polarity == "disparity":
        target = torch.from_numpy(normalised_disparity(entry.depth, entry.valid)[0])
    else:
        valid = torch.from_numpy(entry.valid & (entry.depth > 0))
        target = nearest_fill(torch.from_numpy(entry.depth.astype(np.float32)), valid)
    return initial_edges(target)


def load_labels(folder: Path, pool: Sequence[int]) -> dict[int, torch.Tensor]:
    """Scene index → G_S (H × W float16, on the CPU: the pool can be larger than a GPU
    should hold) for every scene of `pool`."""
    return {scene: load_file(str(folder / f"{scene:07d}.safetensors"))["edges"]
            for scene in pool}


def label_crops(labels: Mapping[int, torch.Tensor], batch: Mapping[str, torch.Tensor],
                crop: int) -> torch.Tensor:
    """G_S cut to each sample's crop of a `CropDataset` batch (its `scene`, `top`, `left` and
    `flip` index into `augment.FLIPS`) and flipped as the sample was: B × 1 × crop × crop
    float32."""
    crops = []
    for scene, top, left, flip in zip(batch["scene"].tolist(), batch["top"].tolist(),
                                      batch["left"].tolist(), batch["flip"].tolist(), strict=True):
        window = labels[scene][top:top + crop, left:left + crop]
        crops.append(window.flip(FLIPS[flip]) if FLIPS[flip] else window)
    return torch.stack(crops)[:, None].float()


def remove_older(run_dir: Path, refresh: int) -> None:
    """Delete the label folders of refreshes before `refresh` (no checkpoint needs them once
    one of `refresh` or later exists)."""
    for folder in (run_dir / "labels").glob("refresh-*"):
        if int(folder.name.split("-")[1]) < refresh:
            shutil.rmtree(folder, ignore_errors=True)
