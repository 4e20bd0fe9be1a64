"""The README's before/after crop of edge snapping on `sddr demo`'s scene.

    PYTHONPATH=. python benchmarks/edge_snap_figure.py [--weights default]

Runs `sddr demo` into a temporary folder, snaps its refined.png with its image.png (as
`sddr refine --low low.png --high high.png --image image.png` does), and writes
docs/img/edge-snap.png: the same crop of the photo, the refined depth and the snapped depth
(one colour scale), enlarged 3× without smoothing, and prints row 160 across the teal post's
left edge.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import cv2
import numpy as np

from sddr_core.cli.demo import side_by_side
from sddr_core.cli.main import main as sddr
from sddr_core.files.depth_io import colorize_depth, read_depth, read_image, write_image
from sddr_core.maps.edge_snap import snap_edges

DOCS = Path(__file__).resolve().parents[1] / "docs" / "img"
CROP = (150, 50, 120, 180)
"""(top, left, height, width) of the crop: the red box, the grey box behind it and the teal post."""
ROW, COLUMNS = 160, slice(111, 132)
"""The issue's row across the brown box (refined: a ramp over x = 311–321)."""
ENLARGE = 3


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--weights", default="default")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        if sddr(["demo", "-o", folder, "--weights", args.weights]) != 0:
            raise SystemExit("sddr demo failed")
        photo = read_image(Path(folder) / "image.png")
        refined = read_depth(Path(folder) / "refined.png").astype(np.float32) / 65535
    snapped = snap_edges(refined, photo)
    top, left, height, width = CROP
    crop = (slice(top, top + height), slice(left, left + width))
    low, high = float(refined[crop].min()), float(refined[crop].max())
    panels = {name: cv2.resize(panel, None, fx=ENLARGE, fy=ENLARGE,
                               interpolation=cv2.INTER_NEAREST)
              for name, panel in (("photo", photo[crop]),
                                  ("refined", colorize_depth(refined[crop], low, high)),
                                  ("snapped", colorize_depth(snapped[crop], low, high)))}
    print(f"wrote {write_image(DOCS / 'edge-snap.png', side_by_side(panels))}")
    np.set_printoptions(precision=2, linewidth=200)
    print(f"row {ROW}, x {COLUMNS.start}-{COLUMNS.stop - 1}:")
    print("  refined", refined[ROW, COLUMNS])
    print("  snapped", snapped[ROW, COLUMNS])


if __name__ == "__main__":
    main()
