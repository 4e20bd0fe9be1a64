"""The preview of example_workflows/sddr_load_depth.json, made by that workflow's own nodes:
`sddr demo`'s 16-bit low.png and high.png through SDDR Load Depth and SDDR Refine Depth (the
bundled weights), shown as ComfyUI previews them (gray, near = bright), beside the photo.

Run from the repository root (ComfyUI modules as in benchmarks/comfyui_refine.py):
    python -m benchmarks.load_depth_thumbnail
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np
import torch

from benchmarks.comfyui_refine import comfy_modules
from sddr_core.cli.demo import side_by_side
from sddr_core.files.depth_io import read_image, write_image

REPO = Path(__file__).resolve().parent.parent
OUTPUT = REPO / "example_workflows" / "sddr_load_depth.jpg"
TILE = 256


def square_tile(image: torch.Tensor) -> np.ndarray:
    """Frame 0 of an IMAGE as 8-bit RGB, its centre square at TILE × TILE."""
    pixels = (image[0].clamp(0, 1).numpy() * 255 + 0.5).astype(np.uint8)
    height, width = pixels.shape[:2]
    side = min(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    square = np.ascontiguousarray(pixels[top:top + side, left:left + side])
    return cv2.resize(square, (TILE, TILE), interpolation=cv2.INTER_AREA)


def main() -> None:
    comfy_modules()
    import folder_paths

    from comfyui_nodes import nodes

    with tempfile.TemporaryDirectory() as folder:
        subprocess.run([sys.executable, "-m", "sddr_core.cli.main", "demo", "-o", folder],
                       check=True, capture_output=True)
        folder_paths.input_directory = folder
        low = nodes.SDDRLoadDepth.execute("low.png", "0..1").result[0]
        high = nodes.SDDRLoadDepth.execute("high.png", "0..1").result[0]
        photo = torch.from_numpy(read_image(Path(folder) / "image.png")).float().div(255)[None]
    (refiner,) = nodes.SDDRLoadRefiner.execute("default", "cpu", "fp32", 2048).result
    refined, _ = nodes.SDDRRefineDepth.execute(refiner, low, high, 0, 0, "per frame",
                                               "auto").result
    rows = [side_by_side({"image": square_tile(photo), "low": square_tile(low)}),
            side_by_side({"high": square_tile(high), "refined": square_tile(refined)})]
    write_image(OUTPUT, np.concatenate(rows, axis=0), (cv2.IMWRITE_JPEG_QUALITY, 88))
    print(f"wrote {OUTPUT}")


if __name__ == "__main__":
    main()
