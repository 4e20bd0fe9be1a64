"""Regenerate the README's and the model card's demo figures from `sddr demo`.

    python benchmarks/demo_figures.py [--weights default]

Runs `sddr demo` into a temporary folder and writes docs/img/demo.jpg (its comparison strip,
1600 px wide) and docs/img/demo-zoom.jpg (the same 310 × 260 crop of each of the four panels at
full size: the box, the ball and the poles).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import cv2
import numpy as np

from sddr_core.cli.main import main as sddr
from sddr_core.files.atomic import atomic_output

DOCS = Path(__file__).resolve().parents[1] / "docs" / "img"
WIDTH = 1600
"""Width of docs/img/demo.jpg."""
ZOOM = (120, 250, 260, 310)
"""(top, left, height, width) of the zoomed crop inside each panel."""
PANELS = 4
"""image, low, high, refined: the strip's panels, side by side and equally wide."""


def zoomed(strip: np.ndarray) -> np.ndarray:
    """The ZOOM crop of every panel of the comparison strip, side by side."""
    top, left, height, width = ZOOM
    panel = strip.shape[1] // PANELS
    return np.concatenate([strip[top:top + height, k * panel + left:k * panel + left + width]
                           for k in range(PANELS)], axis=1)


def write_jpeg(path: Path, image: np.ndarray, quality: int = 90) -> None:
    """Write a BGR figure as JPEG, atomically; a failed encode leaves the old file, not an empty
    one (`atomic_output` would otherwise move the empty temporary file into place)."""
    with atomic_output(path) as tmp:
        if not cv2.imwrite(str(tmp), image, [cv2.IMWRITE_JPEG_QUALITY, quality]):
            raise SystemExit(f"could not write {path}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--weights", default="default")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        if sddr(["demo", "-o", folder, "--weights", args.weights]):
            raise SystemExit("sddr demo failed")
        strip = cv2.imread(str(Path(folder) / "comparison.png"))
    height = round(strip.shape[0] * WIDTH / strip.shape[1])
    write_jpeg(DOCS / "demo.jpg", cv2.resize(strip, (WIDTH, height), interpolation=cv2.INTER_AREA))
    write_jpeg(DOCS / "demo-zoom.jpg", zoomed(strip))
    print(f"wrote {DOCS / 'demo.jpg'} and {DOCS / 'demo-zoom.jpg'}")


if __name__ == "__main__":
    main()
