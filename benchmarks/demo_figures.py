"""Regenerate the README's and the model card's demo figures from `sddr demo`.

    python benchmarks/demo_figures.py [--weights default]

Runs `sddr demo` into a temporary folder and writes docs/img/demo.jpg (its comparison strip,
1600 px wide) and docs/img/demo-zoom.jpg (the same 310 × 260 crop of each of the four panels at
full size: a pole, a wire, the plant and two boxes).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import cv2
import numpy as np

from sddr_core.cli.main import main as sddr
from sddr_core.files.depth_io import read_image, write_image

DOCS = Path(__file__).resolve().parents[1] / "docs" / "img"
WIDTH = 1600
"""Width of docs/img/demo.jpg."""
ZOOM = (0, 300, 260, 310)
"""(top, left, height, width) of the zoomed crop inside each panel."""
PANELS = 4
"""image, low, high, refined: the strip's panels, side by side and equally wide."""


def zoomed(strip: np.ndarray) -> np.ndarray:
    """The ZOOM crop of every panel of the comparison strip, side by side."""
    top, left, height, width = ZOOM
    panel = strip.shape[1] // PANELS
    return np.concatenate([strip[top:top + height, k * panel + left:k * panel + left + width]
                           for k in range(PANELS)], axis=1)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--weights", default="default")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        if sddr(["demo", "-o", folder, "--weights", args.weights]):
            raise SystemExit("sddr demo failed")
        strip = read_image(Path(folder) / "comparison.png")
    height = round(strip.shape[0] * WIDTH / strip.shape[1])
    quality = (cv2.IMWRITE_JPEG_QUALITY, 90)
    write_image(DOCS / "demo.jpg", cv2.resize(strip, (WIDTH, height),
                                              interpolation=cv2.INTER_AREA), quality)
    write_image(DOCS / "demo-zoom.jpg", zoomed(strip), quality)
    print(f"wrote {DOCS / 'demo.jpg'} and {DOCS / 'demo-zoom.jpg'}")


if __name__ == "__main__":
    main()
