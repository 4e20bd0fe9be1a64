"""A Blender camera with given pinhole intrinsics, so the mesh lines up with the photo from it.

Horizontal sensor fit with a 36 mm sensor: lens = fx·36/W, the principal point as a shift in
units of the width (BlenderProc's `set_intrinsics_from_K_matrix`
convention). Blender's view coordinate of pixel u's centre is (u + 0.5)/W, which matches the
pixel-centre convention of geometry.py.
"""

import bpy

from .geometry import Intrinsics

SENSOR_WIDTH = 36.0


def camera_data(name: str, k: Intrinsics) -> bpy.types.Camera:
    """Camera data reproducing `k` (the scene's render size must be k.width × k.height)."""
    camera = bpy.data.cameras.new(name)
    camera.sensor_fit = "HORIZONTAL"
    camera.sensor_width = SENSOR_WIDTH
    camera.lens = k.fx * SENSOR_WIDTH / k.width
    camera.shift_x = -(k.cx - (k.width - 1) / 2) / k.width
    camera.shift_y = (k.cy - (k.height - 1) / 2) / k.width
    camera.clip_start = 0.01
    camera.clip_end = 10_000.0
    return camera


def match_render(scene: bpy.types.Scene, k: Intrinsics) -> None:
    """Render size of the photo (square pixels), so the camera frames it exactly."""
    scene.render.resolution_x, scene.render.resolution_y = k.width, k.height
    scene.render.resolution_percentage = 100
    scene.render.pixel_aspect_x = scene.render.pixel_aspect_y = 1.0
