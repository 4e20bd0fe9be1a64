"""Procedural clips with exact depth per frame: one seeded room (`rooms.compose_scene`) seen
through a moving camera, with boxes sliding across it (issue 27, part 2).

A clip's frames share every primitive and differ only in the camera's pose and focal length
and in the moving boxes' positions, so depth changes from frame to frame exactly as the motion
says; `cameras` gives each frame's pose and intrinsics for reprojection
(`evaluation.temporal`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import InputError
from .primitives import Box
from .raycast import Camera, render
from .rooms import _clear_of_camera, compose_scene


@dataclass(frozen=True)
class Motion:
    """How a clip moves, from its first frame to its last (linearly in between)."""

    travel: tuple[float, float, float] = (0.0, 0.0, 0.0)
    """Camera translation in metres along its own first-frame axes (right, down, forward)."""
    yaw_degrees: float = 0.0
    """Camera turn about the vertical axis (a pan)."""
    zoom: float = 1.0
    """Focal length of the last frame over the first's."""
    movers: int = 0
    """Boxes that slide across the view in front of the room, each up to half the view wide."""


MOTIONS = {
    "static": Motion(),
    "objects": Motion(movers=2),
    "pan": Motion(yaw_degrees=12.0),
    "dolly": Motion(travel=(0.3, 0.0, 0.8)),
    "zoom": Motion(zoom=1.3),
    "walk": Motion(travel=(0.2, 0.0, 0.6), yaw_degrees=8.0, zoom=1.15, movers=1),
}
"""The benchmark's motions: a still camera (what flicker shows most on), moving objects, and
each camera motion alone and together."""


@dataclass(frozen=True)
class Clip:
    """A rendered clip of T frames.

    depth : (T, H, W) float32 z-depth in metres, finite and positive everywhere (a closed room).
    moving : (T, H, W) bool, pixels that see a moving box.
    cameras : one `raycast.Camera` per frame (pose in world metres, K in pixels).
    """

    depth: np.ndarray
    moving: np.ndarray
    cameras: tuple[Camera, ...]


def render_clip(seed: int, frames: int = 24, height: int = 192, width: int = 256,
                motion: str | Motion = "walk") -> Clip:
    """Render `frames` frames of the room of `seed` under `motion` (a name of `MOTIONS`).

    Examples
    --------
    >>> clip = render_clip(7, frames=3, height=24, width=32, motion="dolly")
    >>> clip.depth.shape, len(clip.cameras)
    ((3, 24, 32), 3)
    """
    if not isinstance(frames, int) or isinstance(frames, bool) or frames < 1:
        raise InputError(f"frames: expected a whole number ≥ 1, got {frames!r}")
    if isinstance(motion, str):
        if motion not in MOTIONS:
            raise InputError(f"motion {motion!r}: choose from {', '.join(MOTIONS)}")
        motion = MOTIONS[motion]
    rng = np.random.default_rng(seed)
    first, parts = compose_scene(rng, height, width)
    cameras = tuple(_camera_at(first, motion, _progress(index, frames))
                    for index in range(frames))
    still = [p for _, p in parts
             if all(_clear_of_camera(p, camera.position) for camera in cameras)]
    if motion.movers:
        reach = float(np.median(render(still, first, height, width)[0]))
    paths = [_mover(rng, first, max(reach, motion.travel[2] + 1.0)) for _ in range(motion.movers)]
    depths, moving = [], []
    for index, camera in enumerate(cameras):
        boxes = [Box(start + _progress(index, frames) * travel, half, rotation)
                 for start, travel, half, rotation in paths]
        depth, labels = render(boxes + still, camera, height, width)
        depths.append(depth)
        moving.append((labels >= 0) & (labels < len(boxes)))
    return Clip(np.stack(depths), np.stack(moving), cameras)


def _progress(index: int, frames: int) -> float:
    return index / max(frames - 1, 1)


def _camera_at(first: Camera, motion: Motion, progress: float) -> Camera:
    """`first` moved `progress` (0–1) of the way along `motion`."""
    angle = np.radians(motion.yaw_degrees) * progress
    c, s = np.cos(angle), np.sin(angle)
    turn = np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])  # about world +y, up in the rooms
    position = first.position + first.rotation @ (np.asarray(motion.travel) * progress)
    intrinsics = first.intrinsics.copy()
    intrinsics[:2, :2] *= 1 + (motion.zoom - 1) * progress
    return Camera(intrinsics, turn @ first.rotation, position)


def _mover(rng: np.random.Generator, camera: Camera, reach: float
           ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(start centre, travel over the clip, half sizes, rotation) of a box sliding sideways
    across the first camera's view, 35–70 % of the way to `reach` (the room's median depth,
    or past the camera's forward travel)."""
    right, forward = camera.rotation[:, 0], camera.rotation[:, 2]
    distance = max(rng.uniform(0.35, 0.7) * reach, 0.8)
    width = distance * camera.intrinsics[0, 2] / camera.intrinsics[0, 0]  # half the view
    half = np.array([rng.uniform(0.1, 0.25), rng.uniform(0.1, 0.3), 0.05]) * width
    side = rng.choice([-1.0, 1.0])
    start = camera.position + distance * forward - side * 0.6 * width * right
    rotation = np.stack([right, np.cross(forward, right), forward], axis=1)
    return start, side * 1.2 * width * right, half, rotation

