"""`sddr demo`: refine the bundled sample scene and write inputs, result and a comparison."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from ..files.depth_io import colorize_depth, write_depth, write_image
from ..inference.refiner import Refiner
from ..predictors.simulated import SimulatedPredictor
from .sample import sample_scene


def run_demo(refiner: Refiner, out_dir: str | os.PathLike) -> list[Path]:
    """Write image.png, low.png, high.png, refined.png (16-bit) and comparison.png."""
    out = Path(out_dir)
    rgb, low, high = sample_inputs()
    refined = refiner.refine(low, high)
    height, width = high.shape
    low_up = cv2.resize(low, (width, height), interpolation=cv2.INTER_CUBIC)
    written = [
        write_image(out / "image.png", rgb),
        write_depth(out / "low.png", low),
        write_depth(out / "high.png", high),
        write_depth(out / "refined.png", refined),
    ]
    panels = {"image": rgb, "low (bicubic up)": low_up, "high": high, "refined": refined}
    written.append(write_image(out / "comparison.png", side_by_side(panels)))
    return written


def sample_inputs() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(photo H×W×3 uint8, low, high): the sample scene and its low- (r̂) and full-resolution
    depth from the simulated predictor, as `sddr demo` writes them (no download needed)."""
    rgb, depth = sample_scene()
    predictor = SimulatedPredictor(depth)
    return (rgb, predictor.predict(rgb, predictor.training_resolution),
            predictor.predict(rgb, max(depth.shape)))


def side_by_side(panels: dict[str, np.ndarray]) -> np.ndarray:
    """One RGB strip: RGB panels as they are, depth panels in Turbo, each labelled."""
    tiles = []
    for label, panel in panels.items():
        tile = panel if panel.ndim == 3 else colorize_depth(panel)
        tile = np.ascontiguousarray(tile)
        cv2.putText(tile, label, (10, 30), cv2.FONT_HERSHEY_SIMPLEX, 0.9, (0, 0, 0), 4)
        cv2.putText(tile, label, (10, 30), cv2.FONT_HERSHEY_SIMPLEX, 0.9, (255, 255, 255), 2)
        tiles.append(tile)
    return np.concatenate(tiles, axis=1)

