"""`sddr demo`: refine the bundled sample scene and write inputs, result and a comparison."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from .. import __version__
from ..errors import InputError
from ..files.depth_io import colorize_depth, write_image
from ..files.sidecar import write_depth_with_meaning
from ..inference.coarse_to_fine import CoarseToFine
from ..inference.pipeline import MODES
from ..inference.refiner import Refiner
from ..inference.windows import STEPS
from ..predictors.simulated import SimulatedPredictor
from .sample import sample_scene


def run_demo(refiner: Refiner, out_dir: str | os.PathLike, mode: str = "one-stage") -> list[Path]:
    """Write image.png, low.png, high.png, refined.png (16-bit, each with its sidecar) and
    comparison.png; `mode` "two-stage" refines coarse to fine, the simulated predictor
    predicting each window from its crop.

    The maps are the simulated predictor's disparity, 0 at the scene's farthest and 1 at its
    nearest distance (refined.png is aligned to low.png), so the sidecars give those distances;
    they give no field of view (docs/decisions.md 182, 191).
    """
    if mode not in MODES:
        raise InputError(f"mode {mode!r}: choose from {', '.join(MODES)}")
    out = Path(out_dir)
    rgb, low, high, depth = sample_inputs()
    if mode == "two-stage":
        refined = CoarseToFine(refiner, SimulatedPredictor(depth)).two_stage(
            rgb, STEPS, (low, high))[0]
    else:
        refined = refiner.refine(low, high)
    height, width = high.shape
    low_up = cv2.resize(low, (width, height), interpolation=cv2.INTER_CUBIC)
    meaning = {"kind": "disparity", "units": "relative", "written_by": f"sddr demo {__version__}",
               "distances": (float(depth.max()), float(depth.min()))}
    written = [write_image(out / "image.png", rgb)]
    for name, disparity in (("low", low), ("high", high), ("refined", refined)):
        written += write_depth_with_meaning(out / f"{name}.png", disparity, **meaning)
    panels = {"image": rgb, "low (bicubic up)": low_up, "high": high, "refined": refined}
    written.append(write_image(out / "comparison.png", side_by_side(panels)))
    return written


def sample_inputs() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(photo H×W×3 uint8, low, high, exact depth): the sample scene, its low- (r̂) and
    full-resolution disparity from the simulated predictor, as `sddr demo` writes them (no
    download needed), and the distances they were made from."""
    rgb, depth = sample_scene()
    predictor = SimulatedPredictor(depth)
    return (rgb, predictor.predict(rgb, predictor.training_resolution),
            predictor.predict(rgb, max(depth.shape)), depth)


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

