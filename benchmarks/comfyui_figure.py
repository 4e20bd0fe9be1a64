"""The figure of the nodes' outputs in docs/comfyui.md and web/docs/: sample scene, low and
high depth inputs, SDDRRefineDepth's depth, SDDRDepthEdges' edges, each as ComfyUI shows
the IMAGE (gray, near = bright).

Run from the repository root (ComfyUI modules as in benchmarks/comfyui_refine.py):
    python -m benchmarks.comfyui_figure [--weights FILE]
The inputs are the paper's simulated predictor on the sample scene (low at r̂ = 384, high at
the scene's 768 px), so no download is needed; the edges node runs the same predictor. The
refiner is --weights, else the bundled default, else random `small` weights (an install
without its bundled file), and the figure's caption says which.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

import cv2
import numpy as np
import torch

from benchmarks.comfyui_refine import comfy_modules
from sddr_core import build_refiner
from sddr_core.cli.demo import side_by_side
from sddr_core.cli.sample import sample_scene
from sddr_core.files.depth_io import write_image
from sddr_core.files.weights import BUNDLED, BUNDLED_DIR
from sddr_core.predictors.simulated import SimulatedPredictor

REPO = Path(__file__).resolve().parent.parent
OUTPUTS = (REPO / "docs" / "img" / "comfyui-outputs.jpg",
           REPO / "web" / "docs" / "comfyui-outputs.jpg")
PANEL_WIDTH = 384


def gray_panel(image: torch.Tensor) -> np.ndarray:
    """Frame 0 of an IMAGE as 8-bit RGB at PANEL_WIDTH, the way a preview shows it."""
    pixels = (image[0].clamp(0, 1).numpy() * 255 + 0.5).astype(np.uint8)
    height = round(pixels.shape[0] * PANEL_WIDTH / pixels.shape[1])
    return cv2.resize(pixels, (PANEL_WIDTH, height), interpolation=cv2.INTER_AREA)


def as_image(maps: np.ndarray) -> torch.Tensor:
    """A near-bright depth IMAGE (1×H×W×3, 0..1) of a disparity map, as a depth node gives."""
    scaled = (maps - maps.min()) / (maps.max() - maps.min())
    return torch.from_numpy(scaled.astype(np.float32))[None, ..., None].expand(-1, -1, -1, 3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", help="refiner .safetensors (default: bundled or random)")
    options = parser.parse_args()
    comfy_modules()
    import folder_paths

    from comfyui_nodes import models, nodes

    rgb, depth = sample_scene()
    predictor = SimulatedPredictor(depth)
    low = predictor.predict(rgb, predictor.training_resolution)
    high = predictor.predict(rgb, max(depth.shape))
    with_random = options.weights is None and not (BUNDLED_DIR / BUNDLED["default"]).is_file()
    caption = ("random weights" if with_random
               else Path(options.weights or "default").name)
    with tempfile.TemporaryDirectory() as base:
        (Path(base) / "sddr").mkdir()
        if options.weights:
            shutil.copy(options.weights, Path(base) / "sddr" / "figure.safetensors")
        elif with_random:
            build_refiner("small").save(Path(base) / "sddr" / "figure.safetensors")
        folder_paths.models_dir = base
        folder_paths.folder_names_and_paths.pop(models.WEIGHTS_FOLDER, None)
        weights = "default" if caption == "default" else "figure.safetensors"
        (refiner,) = nodes.SDDRLoadRefiner.execute(weights, "cpu", "fp32", 2048).result
    refined, _ = nodes.SDDRRefineDepth.execute(refiner, as_image(low), as_image(high), 0, 0,
                                               "per frame", "auto").result
    # The predictor cache the node reads (private): the simulated predictor of the scene.
    models._predictors[("depth-anything-v2-small", "cpu")] = (predictor, [])
    photo = torch.from_numpy(rgb).float().div(255)[None]
    (edges,) = nodes.SDDRDepthEdges.execute(refiner, photo, "depth-anything-v2-small",
                                            3).result
    panels = {"image": gray_panel(photo), "low_depth (384)": gray_panel(as_image(low)),
              "high_depth (768)": gray_panel(as_image(high)),
              f"refined ({caption})": gray_panel(refined), "edges (G_S)": gray_panel(edges)}
    strip = side_by_side(panels)
    for path in OUTPUTS:
        write_image(path, strip, (cv2.IMWRITE_JPEG_QUALITY, 88))
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
