"""G_S for phase 2: the current model's coarse-to-fine edge maps of the scenes it trains on next.

Self-distillation remakes its pseudo-labels from the model being trained (method.md §3.1).
Every `schedule.label_refresh` steps the scenes of the next pool (`Schedule.label_pool`) are
labelled by `sddr_core.inference.labels.edge_labels` with S = `schedule.label_steps`: the
whole-image pass on the cached low and high predictions, then S steps of windows whose high
inputs the scene's own simulated predictor makes at Eq. 11's resolutions (undegraded: they
only have to be as a predictor would see each window), or for a folder sample whose inputs a
real predictor made, that predictor on the window's RGB. The labels are written to the run
folder, one float16 file per scene, so a run resumed between two refreshes trains on exactly
the labels the uninterrupted run had (the model that made them is gone by then), and each
process labels its share of the pool.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from sddr_core.files.atomic import atomic_output
from sddr_core.inference.labels import LabelSample, edge_labels
from sddr_core.network import RefinementNetwork
from sddr_core.predictors.base import DepthPredictor
from training.data.augment import FLIPS
from training.data.cache import read_entry


def label_folder(run_dir: Path, refresh: int) -> Path:
    return run_dir / "labels" / f"refresh-{refresh:04d}"


def make_labels(model: RefinementNetwork, entries: Sequence[Path], pool: Sequence[int],
                steps: int, folder: Path, rank: int = 0, world: int = 1,
                progress: Callable[[int, int], None] | None = None,
                predictor: DepthPredictor | None = None) -> None:
    """Write G_S of this process's share of `pool` (scene indices into `entries`) to `folder`,
    skipping scenes already labelled there (a refresh interrupted by a kill). A scene cached
    with its RGB has its windows predicted by `predictor` (the real one that made its
    inputs); the others by their own simulator."""
    folder.mkdir(parents=True, exist_ok=True)
    share = list(pool)[rank::world]
    for done, scene in enumerate(share, 1):
        path = folder / f"{scene:07d}.safetensors"
        if not path.exists():
            entry = read_entry(entries[scene])
            if entry.image is not None and predictor is not None:
                image, windows = entry.image, predictor
            else:  # the simulator reads only the image's size
                image = np.zeros((*entry.depth.shape, 3), np.uint8)
                windows = entry.draw.predictor(entry.depth, entry.valid)
            sample = LabelSample(entry.low, entry.high, image=image, size=entry.depth.shape)
            _, edges = edge_labels(model, [sample], steps, windows)[0]
            with atomic_output(path) as tmp:
                save_file({"edges": edges.to("cpu", torch.float16).contiguous()}, str(tmp))
        if progress is not None:
            progress(done, len(share))


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
