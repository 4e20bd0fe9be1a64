"""The square thumbnails of example_workflows/ (the template browser's pictures), made from
each workflow's own outputs: its API-format graph (example_workflows/api/) run on a real
ComfyUI server with this repository as its one custom node, as a user runs it.

Run from the repository root, where COMFYUI_DIR (and COMFYUI_PYTHON) are set as for
tests/test_comfyui_real.py:
    python -m benchmarks.workflow_thumbnails [--predictors DIR]
SDDR ControlNet Depth runs its depth half only (the diffusion half needs a checkpoint and a
ControlNet model): its thumbnail is the depth it conditions on. SDDR Depth From Image needs
Depth Anything V2: give --predictors, a models/sddr_predictors folder holding it; without
one its thumbnail shows the photo it loads and says what it needs.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np

from sddr_core.files.depth_io import write_image
from tests import comfyui_server

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "example_workflows"
SIDE = 512
TARGETS = {"SDDR ControlNet Depth": ["6", "7"]}
"""Output nodes run where not all of a workflow can run here."""
SHOWN = {"SDDR Refine Depth": ("6", "refined depth"),
         "SDDR ControlNet Depth": ("6", "depth for ControlNet"),
         "SDDR Depth From Image": ("6", "depth"),
         "SDDR Video Depth": ("5", "depth, first frame")}
"""Each workflow's preview node whose picture is the thumbnail's main panel."""


def fitted(rgb: np.ndarray, label: str, width: int) -> np.ndarray:
    """`rgb` resized to `width` (aspect kept), labelled in its top-left corner."""
    height = round(rgb.shape[0] * width / rgb.shape[1])
    tile = np.ascontiguousarray(cv2.resize(rgb, (width, height), interpolation=cv2.INTER_AREA))
    for colour, thickness in (((0, 0, 0), 4), ((255, 255, 255), 2)):
        cv2.putText(tile, label, (8, 24), cv2.FONT_HERSHEY_SIMPLEX, 0.7, colour, thickness)
    return tile


def square(main: np.ndarray, below: list[np.ndarray]) -> np.ndarray:
    """`main` across the top, the `below` tiles side by side under it, on a SIDE² canvas."""
    canvas = np.full((SIDE, SIDE, 3), 24, np.uint8)
    canvas[:main.shape[0]] = main[:SIDE]
    row = np.concatenate(below, axis=1) if below else None
    if row is not None:
        top = min(main.shape[0], SIDE - row.shape[0])
        canvas[top:top + row.shape[0], :row.shape[1]] = row
    return canvas


def read_rgb(data: bytes) -> np.ndarray:
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if image.dtype == np.uint16:
        image = (image / 257).astype(np.uint8)
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=-1)
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def first_frame(path: Path) -> np.ndarray:
    """The first frame of a video file, RGB."""
    capture = cv2.VideoCapture(str(path))
    ok, frame = capture.read()
    capture.release()
    if not ok:
        raise ValueError(f"{path}: no frame could be read")
    return cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)


def thumbnail(url: str, base: Path, name: str, graph: dict) -> np.ndarray:
    """The run's main preview over the pictures the workflow loads (or a note saying what
    it needs, when it stops for a missing model)."""
    result = comfyui_server.run(url, graph, targets=TARGETS.get(name))
    inputs = [(node["inputs"].get("file") or node["inputs"]["image"], node["_meta"]["title"])
              for node in graph.values()
              if node["class_type"] in ("SDDRLoadDepth", "LoadImage", "LoadVideo")]
    pictures = [(first_frame(base / "input" / file) if title == "Load Video"
                 else read_rgb((base / "input" / file).read_bytes()),
                 title.replace("SDDR Load Depth: ", "").replace("Load Image", "photo")
                 .replace("Load Video", "video, first frame"))
                for file, title in inputs]
    if result["status"]["status_str"] != "success":
        photo = fitted(*pictures[0], SIDE)
        note = np.full((SIDE - photo.shape[0], SIDE, 3), 24, np.uint8)
        for line, text in enumerate(("Needs Depth Anything V2,", "downloaded on first run")):
            cv2.putText(note, text, (24, 80 + 40 * line), cv2.FONT_HERSHEY_SIMPLEX, 0.9,
                        (255, 255, 255), 2)
        return square(note, [photo])
    half = SIDE // max(2, len(pictures))
    below = [fitted(rgb, label, half) for rgb, label in pictures]
    node, label = SHOWN[name]
    main = fitted(read_rgb(comfyui_server.view(url, result["outputs"][node]["images"][0])),
                  label, SIDE)
    if "7" in result["outputs"] and name == "SDDR Depth From Image":  # the edges preview
        below.append(fitted(read_rgb(comfyui_server.view(
            url, result["outputs"]["7"]["images"][0])), "edges", half))
    return square(main, below)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--predictors", type=Path,
                        help="a models/sddr_predictors folder holding Depth Anything V2")
    args = parser.parse_args()
    comfyui_dir = os.environ["COMFYUI_DIR"]
    python = os.environ.get("COMFYUI_PYTHON", sys.executable)
    with tempfile.TemporaryDirectory() as folder:
        base = Path(folder)
        comfyui_server.prepare_base(base)
        if args.predictors:
            shutil.copytree(args.predictors, base / "models" / "sddr_predictors")
        process, url = comfyui_server.start(base, comfyui_dir, python)
        try:
            for path in sorted((EXAMPLES / "api").glob("*.json")):
                picture = thumbnail(url, base, path.stem, json.loads(path.read_text()))
                written = write_image(EXAMPLES / f"{path.stem}.jpg", picture,
                                      (cv2.IMWRITE_JPEG_QUALITY, 88))
                print(f"wrote {written}")
        finally:
            comfyui_server.stop(process)


if __name__ == "__main__":
    main()
