"""A pinhole camera and the renderer: the nearest hit of every pixel's ray over a primitive list.

Each primitive is tested only on the pixels inside the screen rectangle its bounding sphere
projects to, so many small shapes (leaves, rods, table legs) cost little more than their size.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from sddr_core.scenes.primitives import Primitive

_NEAR = 0.05  # metres: a bounding sphere reaching closer than this to the image plane is not culled


@dataclass(frozen=True)
class Camera:
    """Pinhole camera, OpenCV axes (x right, y down, z forward).

    `intrinsics` is K (3, 3) in pixels, pixel (i, j)'s centre at (j + 0.5, i + 0.5);
    `rotation` (3, 3) has the camera axes in world coordinates as its columns;
    `position` (3,) is the centre in world metres.
    """

    intrinsics: np.ndarray
    rotation: np.ndarray
    position: np.ndarray

    @classmethod
    def looking(cls, height: int, width: int, fov_degrees: float, rotation: np.ndarray,
                position: np.ndarray) -> Camera:
        """A camera whose field of view `fov_degrees` spans the image's long side."""
        focal = max(height, width) / 2 / np.tan(np.radians(fov_degrees) / 2)
        intrinsics = np.array([[focal, 0, width / 2], [0, focal, height / 2], [0, 0, 1.0]])
        return cls(intrinsics, np.asarray(rotation, float), np.asarray(position, float))

    def ray_directions(self, height: int, width: int) -> np.ndarray:
        """(3, H, W) float32 world directions with camera-space z = 1, so t along them is depth."""
        (fx, _, cx), (_, fy, cy) = self.intrinsics[:2]
        x = ((np.arange(width) + 0.5 - cx) / fx).astype(np.float32)
        y = ((np.arange(height) + 0.5 - cy) / fy).astype(np.float32)
        r = self.rotation.astype(np.float32)
        return (r[:, 0, None, None] * x[None, None, :] + r[:, 1, None, None] * y[None, :, None]
                + r[:, 2, None, None])

    def screen_box(self, center: np.ndarray, radius: float, height: int, width: int
                   ) -> tuple[int, int, int, int] | None:
        """(top, bottom, left, right) pixel bounds holding a sphere's image, None when it is
        behind the camera or off-screen; the whole image when it reaches the camera's plane."""
        local = self.rotation.T @ (np.asarray(center, float) - self.position)
        if local[2] + radius <= 0:
            return None
        if local[2] - radius <= _NEAR:
            return 0, height, 0, width
        # the camera-space cube around the sphere projects inside its 8 corners' hull
        corners = local + radius * np.array(np.meshgrid([-1, 1], [-1, 1], [-1, 1])).reshape(3, -1).T
        pixels = (self.intrinsics @ corners.T)[:2] / corners[:, 2]
        left, top = np.floor(pixels.min(axis=1)).astype(int) - 1
        right, bottom = np.ceil(pixels.max(axis=1)).astype(int) + 1
        top, bottom = max(top, 0), min(bottom, height)
        left, right = max(left, 0), min(right, width)
        if top >= bottom or left >= right:
            return None
        return top, bottom, left, right


def render(primitives: Sequence[Primitive], camera: Camera, height: int, width: int
           ) -> tuple[np.ndarray, np.ndarray]:
    """Depth and which primitive each pixel sees.

    Returns
    -------
    depth : np.ndarray
        (H, W) float32 z-depth in metres of the nearest hit, inf where a ray hits nothing.
    labels : np.ndarray
        (H, W) int16 index into `primitives` of that hit, −1 where nothing is hit.
    """
    dirs = camera.ray_directions(height, width)
    depth = np.full((height, width), np.inf, np.float32)
    labels = np.full((height, width), -1, np.int16)
    origin = camera.position
    for index, primitive in enumerate(primitives):
        bounds = primitive.bounding_sphere()
        box = (0, height, 0, width) if bounds is None else camera.screen_box(*bounds, height, width)
        if box is None:
            continue
        top, bottom, left, right = box
        nearest = depth[top:bottom, left:right]
        t = primitive.intersect(origin, dirs[:, top:bottom, left:right], nearest)
        closer = t < nearest
        nearest[closer] = t[closer]
        labels[top:bottom, left:right][closer] = index
    return depth, labels
