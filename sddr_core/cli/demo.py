"""`sddr demo`: refine the bundled sample scene and write inputs, result and a comparison."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from ..errors import InputError
from ..files.atomic import atomic_output
from ..files.depth_io import colorize_depth, write_depth
from ..inference.refiner import Refiner
from ..predictors.simulated import SimulatedPredictor
from .sample import sample_scene


def run_demo(refiner: Refiner, out_dir: str | os.PathLike) -> list[Path]:
    """Write image.png, low.png, high.png, refined.png (16-bit) and comparison.png."""
    out = Path(out_dir)
    rgb, depth = sample_scene()
    predictor = SimulatedPredictor(depth)
    low = predictor.predict(rgb, predictor.training_resolution)
    high = predictor.predict(rgb, max(depth.shape))
    refined = refiner.refine(low, high)
    height, width = high.shape
    low_up = cv2.resize(low, (width, height), interpolation=cv2.INTER_CUBIC)
    written = [
        _write_rgb(out / "image.png", rgb),
        write_depth(out / "low.png", low),
        write_depth(out / "high.png", high),
        write_depth(out / "refined.png", refined),
    ]
    panels = {"image": rgb, "low (bicubic up)": low_up, "high": high, "refined": refined}
    written.append(_write_rgb(out / "comparison.png", side_by_side(panels)))
    return written


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


def _write_rgb(path: Path, rgb: np.ndarray) -> Path:
    with atomic_output(path) as tmp:
        if not cv2.imwrite(str(tmp), rgb[..., ::-1]):
            raise InputError(f"could not write image '{path}'")
    return path
