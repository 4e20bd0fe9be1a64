"""The sample scene in ComfyUI's input folder, so the example workflows run as installed.

Load Image, Load Video and SDDR Load Depth list only files in the input folder, as core's
workflows load its `example.png` from there. The pack writes `sddr demo`'s photo and 16-bit
low/high depth there once, and a short video of the same scene, under names no user file is
likely to have, and never overwrites a file.
"""

from __future__ import annotations

import logging
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np

from sddr_core import SddrError
from sddr_core.cli.demo import sample_inputs
from sddr_core.files.atomic import atomic_output
from sddr_core.files.depth_io import write_depth, write_image

PHOTO = "sddr_sample_photo.png"
LOW = "sddr_sample_low.png"
HIGH = "sddr_sample_high.png"
VIDEO = "sddr_sample_video.mp4"
VIDEO_FRAMES = 16
VIDEO_FPS = 12
VIDEO_NOISE = 4.0
"""Sensor noise of the sample video, σ in 8-bit levels, drawn afresh each frame: a still
camera's frames differ as a real camera's do, which is what makes per-frame depth flicker."""


def install_sample_scene(folder: str | Path) -> list[Path]:
    """Write the sample photo, low and high depth and video into `folder` where missing
    (atomically); the paths written. A folder that cannot be written is logged, not raised:
    the pack's nodes work without the sample."""
    folder = Path(folder)
    if all((folder / name).is_file() for name in (PHOTO, LOW, HIGH, VIDEO)):
        return []
    try:
        folder.mkdir(parents=True, exist_ok=True)
        rgb, low, high, _ = sample_inputs()
        writers = {PHOTO: lambda path: write_image(path, rgb),
                   LOW: lambda path: write_depth(path, low),
                   HIGH: lambda path: write_depth(path, high),
                   VIDEO: lambda path: write_video(path, sample_video_frames(rgb), VIDEO_FPS)}
        return [write(folder / name) for name, write in writers.items()
                if not (folder / name).exists()]
    except (OSError, ImportError, SddrError) as error:  # write_depth: OSError → InputError
        logging.warning("[SDDR] could not write the sample scene into %s (%s): the example "
                        "workflows need its files there", folder, error)
        return []


def sample_video_frames(rgb: np.ndarray) -> np.ndarray:
    """VIDEO_FRAMES × H/2 × W/2 × 3 uint8: the sample photo at half size seen by a still
    camera, with VIDEO_NOISE drawn afresh each frame (seeded: the same frames every time)."""
    small = cv2.resize(rgb, (rgb.shape[1] // 2, rgb.shape[0] // 2), interpolation=cv2.INTER_AREA)
    noise = np.random.default_rng(0).normal(0, VIDEO_NOISE, (VIDEO_FRAMES, *small.shape))
    return np.clip(small + noise, 0, 255).round().astype(np.uint8)


def write_video(path: Path, frames: np.ndarray, fps: int) -> Path:
    """T×H×W×3 uint8 RGB frames as an H.264 MP4 at `path` (atomically), as ComfyUI's Save
    Video writes (PyAV, which ComfyUI requires; H×W even, as yuv420p needs)."""
    import av  # ComfyUI's own dependency: imported only when the sample is written

    with atomic_output(path) as partial, av.open(str(partial), mode="w", format="mp4") as out:
        stream = out.add_stream("h264", rate=Fraction(fps))
        stream.height, stream.width = frames.shape[1:3]
        stream.pix_fmt = "yuv420p"
        for frame in frames:
            out.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        out.mux(stream.encode(None))
    return path
