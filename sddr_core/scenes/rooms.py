"""Seeded procedural rooms with exact depth: N_r's training scenes (method.md §5), also the
sample scene of `sddr demo` and the benchmarks' scenes.

N_r sees depth only, so what a scene must carry is geometry: planar walls seen at a slant,
sharp occlusion edges, rods and wires one to a few pixels wide, clusters of leaves with gaps,
lattices, fractal floors and fine relief on walls. Each seed composes a different room from
these and renders it by ray casting (`raycast.render`); the same seed gives a
bit-identical scene at the same size.

Every scene is a closed room, so every ray hits something: `valid` is all True here and is
kept for the sample format the folder datasets share (their ground truth has holes).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from sddr_core.scenes.primitives import (
    Box,
    Cylinder,
    Disc,
    Heightfield,
    Primitive,
    Room,
    Sphere,
)
from sddr_core.scenes.raycast import Camera, render

_UP = np.array([0.0, 1.0, 0.0])


@dataclass(frozen=True)
class Scene:
    """One rendered scene.

    depth : (H, W) float32 z-depth in metres (distance along the optical axis, as depth
        sensors and depth datasets store it; 1/depth is affine in pixels on a plane).
    valid : (H, W) bool, where `depth` is ground truth.
    labels : (H, W) int16 index of the primitive each pixel sees, into `kinds`.
    kinds : the kind of each primitive ("room", "box", "cylinder", "rod", "leaf", ...).
    camera : the pinhole camera, intrinsics K in pixels of this size.
    """

    depth: np.ndarray
    valid: np.ndarray
    labels: np.ndarray
    kinds: tuple[str, ...]
    camera: Camera


def render_scene(seed: int, height: int = 768, width: int = 1024) -> Scene:
    """Compose and render the room of `seed` at `height` × `width` (any aspect ratio).

    Parameters
    ----------
    seed : int
        Any non-negative integer; each gives a different room, camera and field of view.
    height, width : int
        Image size in pixels; rods are sized in pixels of this size, so they stay thin.

    Returns
    -------
    Scene
        Depth in metres (about 0.3–25 m), all valid, with labels and the camera.

    Examples
    --------
    >>> scene = render_scene(7, 48, 64)
    >>> scene.depth.shape, bool(scene.valid.all())
    ((48, 64), True)
    """
    rng = np.random.default_rng(seed)
    camera, parts = compose_scene(rng, height, width)
    depth, labels = render([primitive for _, primitive in parts], camera, height, width)
    valid = np.isfinite(depth) & (depth > 0)
    return Scene(depth, valid, labels, tuple(kind for kind, _ in parts), camera)


def compose_scene(rng: np.random.Generator, height: int, width: int
                  ) -> tuple[Camera, list[tuple[str, Primitive]]]:
    """A random room, a camera inside it, and (kind, primitive) pairs, room first."""
    size = np.array([rng.uniform(3, 14), rng.uniform(2.4, 5), rng.uniform(4, 20)])
    camera = _camera(rng, size, height, width)
    focal = float(camera.intrinsics[0, 0])
    parts: list[tuple[str, Primitive]] = [("room", Room(np.zeros(3), size))]
    builders = [
        (_floor_relief, 0.5), (_wall_relief, 0.7), (_boxes, 0.95), (_spheres, 0.7),
        (_pillars, 0.6), (_tables, 0.6), (_panels, 0.8), (_wires, 0.9), (_poles, 0.7),
        (_foliage, 0.6), (_foliage, 0.3), (_lattice, 0.4),
    ]
    for build, probability in builders:
        if rng.random() < probability:
            parts += build(rng, size, camera, focal)
    keep = [(kind, p) for kind, p in parts if _clear_of_camera(p, camera.position)]
    # relief last: it marches only up to the nearest hit so far, so occluded rays cost nothing
    keep.sort(key=lambda part: part[0] == "relief")
    return camera, keep


def _camera(rng: np.random.Generator, size: np.ndarray, height: int, width: int) -> Camera:
    """Inside the room's front part, looking roughly along +z, pitched and rolled a little."""
    position = np.array([rng.uniform(0.15, 0.85) * size[0],
                         rng.uniform(0.4, min(2.2, size[1] - 0.3)),
                         rng.uniform(0.05, 0.3) * size[2]])
    yaw, pitch = np.radians(rng.uniform(-40, 40)), np.radians(rng.uniform(-35, 12))
    forward = np.array([np.sin(yaw) * np.cos(pitch), np.sin(pitch), np.cos(yaw) * np.cos(pitch)])
    right = np.cross(forward, _UP)
    right /= np.linalg.norm(right)
    down = np.cross(forward, right)
    roll = np.radians(rng.uniform(-5, 5))
    right, down = (np.cos(roll) * right + np.sin(roll) * down,
                   -np.sin(roll) * right + np.cos(roll) * down)
    rotation = np.stack([right, down, forward], axis=1)
    return Camera.looking(height, width, rng.uniform(45, 95), rotation, position)


def _clear_of_camera(primitive: Primitive, position: np.ndarray) -> bool:
    """False when the camera would sit in or within 0.25 m of a shape (a heightfield's block,
    which may be as large as the floor, is checked as a box, others by their bounding sphere)."""
    if isinstance(primitive, Heightfield):
        local = primitive.frame().T @ (position - np.asarray(primitive.corner, float))
        top = np.array([primitive.size_u, primitive.size_v, float(primitive.heights.max())])
        return bool(np.any((local < -0.25) | (local > top + 0.25)))
    bounds = primitive.bounding_sphere()
    return bounds is None or np.linalg.norm(bounds[0] - position) > bounds[1] + 0.25


def _depth_of(camera: Camera, point: np.ndarray) -> float:
    return max(float(camera.rotation[:, 2] @ (point - camera.position)), 0.3)


def _rod(camera: Camera, focal: float, start: np.ndarray, end: np.ndarray, pixels: float
         ) -> Cylinder:
    """A cylinder `pixels` wide in the image at its midpoint's depth."""
    radius = pixels * _depth_of(camera, (start + end) / 2) / (2 * focal)
    return Cylinder(start, end, radius)


def _random_rotation(rng: np.random.Generator) -> np.ndarray:
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q *= np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] *= -1
    return q


def _yaw_rotation(angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])


def _floor_point(rng: np.random.Generator, size: np.ndarray, camera: Camera, margin: float
                 ) -> np.ndarray:
    """A point on the floor, mostly 0.8–9 m ahead of the camera inside its view, so most
    objects are seen; clamped `margin` metres inside the walls."""
    if rng.random() < 0.8:
        forward = camera.rotation[:, 2] * [1, 0, 1]
        forward = forward / max(float(np.linalg.norm(forward)), 1e-6)
        side = np.array([forward[2], 0.0, -forward[0]])
        half_width = camera.intrinsics[0, 2] / camera.intrinsics[0, 0]
        distance = rng.uniform(0.8, 9.0)
        point = camera.position + distance * (forward + rng.uniform(-1, 1) * half_width * side)
    else:
        point = rng.uniform(0, 1, 3) * size
    low, high = np.full(3, margin), size - margin
    point = np.clip(point, low, np.maximum(high, low))
    point[1] = 0.0
    return point


def fractal_noise(rng: np.random.Generator, shape: tuple[int, int], octaves: int = 6,
                  roughness: float = 0.55) -> np.ndarray:
    """Sum of `octaves` up-sampled random grids, each twice as fine and `roughness` times as
    strong as the last, scaled to [0, 1]; float32 of `shape` (rows, columns)."""
    total = np.zeros(shape, np.float32)
    for octave in range(octaves):
        cells = 3 * 2**octave / max(shape)  # per grid pixel, so the noise is isotropic
        coarse_shape = (max(2, round(shape[0] * cells)), max(2, round(shape[1] * cells)))
        coarse = rng.normal(size=coarse_shape).astype(np.float32)
        total += roughness**octave * cv2.resize(coarse, shape[::-1], interpolation=cv2.INTER_CUBIC)
    total -= total.min()
    return total / max(float(total.max()), 1e-6)


def _bricks(rng: np.random.Generator, shape: tuple[int, int], cell: float) -> np.ndarray:
    """Raised bricks (1) with mortar grooves (0), rows offset by half a brick; `cell` metres per
    grid pixel."""
    rows, columns = np.mgrid[0:shape[0], 0:shape[1]].astype(np.float32) * cell
    brick_h, brick_w = rng.uniform(0.06, 0.2), rng.uniform(0.15, 0.5)
    mortar = rng.uniform(0.008, 0.02)
    course = np.floor(rows / brick_h)
    shifted = columns + (course % 2) * brick_w / 2
    in_row = (rows % brick_h) > mortar
    in_column = (shifted % brick_w) > mortar
    return (in_row & in_column).astype(np.float32)


def _plane_relief(corner: np.ndarray, u: np.ndarray, normal: np.ndarray, size_u: float,
                  size_v: float, heights: np.ndarray) -> Heightfield:
    """A heightfield on a plane through `corner`, rising along `normal`."""
    return Heightfield(corner, u, np.cross(normal, u), size_u, size_v, heights)


def _floor_relief(rng, size, camera, focal) -> list[tuple[str, Primitive]]:
    """Fractal terrain over the floor: rubble, sand, soil (centimetres to half a metre)."""
    amplitude = rng.uniform(0.03, 0.5)
    shape = (min(1024, int(size[2] / 0.02)), min(1024, int(size[0] / 0.02)))  # ~2 cm cells
    heights = amplitude * fractal_noise(rng, shape, octaves=8, roughness=rng.uniform(0.4, 0.65))
    relief = _plane_relief(np.array([0.0, 0.0, size[2]]), np.array([1.0, 0, 0]), _UP,
                           size[0], size[2], heights.astype(np.float32))
    return [("relief", relief)]


_WALLS = (  # (corner, u, inward normal, extents as indices into the room size)
    ((0, 1, 0), (0, 0, 1), (1, 0, 0), (2, 1)),
    ((1, 1, 1), (0, 0, -1), (-1, 0, 0), (2, 1)),
    ((0, 1, 1), (1, 0, 0), (0, 0, -1), (0, 1)),
)


def _wall_relief(rng, size, camera, focal) -> list[tuple[str, Primitive]]:
    """Bricks or fractal plaster on a patch of a side or back wall (millimetres to centimetres)."""
    corner, u, normal, extents = _WALLS[rng.integers(len(_WALLS))]
    corner = np.array(corner, float) * size
    u, normal = np.array(u, float), np.array(normal, float)
    v = np.cross(normal, u)
    span_u, span_v = size[extents[0]], size[extents[1]]
    size_u, size_v = rng.uniform(0.3, 1.0) * span_u, rng.uniform(0.3, 1.0) * span_v
    start = corner + rng.uniform(0, span_u - size_u) * u + rng.uniform(0, span_v - size_v) * v
    cell = 0.01
    shape = (max(2, int(size_v / cell)), max(2, int(size_u / cell)))
    if rng.random() < 0.5:
        heights = _bricks(rng, shape, cell) * rng.uniform(0.01, 0.04)
    else:
        heights = fractal_noise(rng, shape, octaves=7, roughness=0.6) * rng.uniform(0.005, 0.05)
    heights += 0.002 * fractal_noise(rng, shape)
    return [("relief", _plane_relief(start, u, normal, size_u, size_v,
                                     heights.astype(np.float32)))]


def _boxes(rng, size, camera, focal) -> list[tuple[str, Primitive]]:
    """Boxes on the floor, some with a smaller one stacked on top."""
    parts: list[tuple[str, Primitive]] = []
    for _ in range(rng.integers(2, 12)):
        half = rng.uniform([0.1, 0.1, 0.1], [0.8, 0.7, 0.8])
        base = _floor_point(rng, size, camera, 0.5) + np.array([0, half[1], 0])
        rotation = _yaw_rotation(rng.uniform(0, np.pi))
        parts.append(("box", Box(base, half, rotation)))
        if rng.random() < 0.3:
            top = half * rng.uniform(0.3, 0.9, 3)
            center = base + np.array([0, half[1] + top[1], 0])
            parts.append(("box", Box(center, top, _yaw_rotation(rng.uniform(0, np.pi)))))
    return parts


def _spheres(rng, size, camera, focal) -> list[tuple[str, Primitive]]:
    """Balls on the floor and lamps hanging from the ceiling on a wire."""
    parts: list[tuple[str, Primitive]] = []
    for _ in range(rng.integers(1, 6)):
        radius = rng.uniform(0.08, 0.6)
        center = _floor_point(rng, size, camera, radius + 0.1)
        if rng.random() < 0.4:
            center[1] = rng.uniform(radius + 0.5, size[1] - radius - 0.2)
            top = np.array([center[0], size[1], center[2]])
            parts.append(("rod", _rod(camera, focal, center, top, rng.uniform(0.8, 2.5))))
        else:
            center[1] = radius
        parts.append(("sphere", Sphere(center, radius)))
    return parts


def _pillars(rng, size, camera, focal) -> list[tuple[str, Primitive]]:
    """Columns floor to ceiling, and logs or pipes lying on the floor."""
    parts: list[tuple[str, Primitive]] = []
    for _ in range(rng.integers(1, 4)):
        radius = rng.uniform(0.05, 0.4)
        base = _floor_point(rng, size, camera, radius + 0.1)
        if rng.random() < 0.6:
            parts.append(("cylinder", Cylinder(base, base + [0, size[1], 0], radius)))
        else:
            direction = _yaw_rotation(rng.uniform(0, np.pi))[:, 0] * rng.uniform(0.5, 3)
            start = base + [0, radius, 0]
            parts.append(("cylinder", Cylinder(start, start + direction, radius)))
    return parts


def _tables(rng, size, camera, focal) -> list[tuple[str, Primitive]]:
    """A thin top on four thin legs: an occluder with gaps under it."""
    parts: list[tuple[str, Primitive]] = []
    for _ in range(rng.integers(1, 3)):
        half = np.array([rng.uniform(0.3, 0.9), rng.uniform(0.012, 0.03), rng.uniform(0.3, 0.5)])
        legs_height = rng.uniform(0.4, 1.0)
        center = _floor_point(rng, size, camera, 1.0) + [0, legs_height + half[1], 0]
        rotation = _yaw_rotation(rng.uniform(0, np.pi))
        parts.append(("box", Box(center, half, rotation)))
        leg_radius = rng.uniform(0.01, 0.035)
        for sx in (-1, 1):
            for sz in (-1, 1):
                foot = center + rotation @ (np.array([sx, 0, sz]) * (half - 2 * leg_radius))
                foot[1] = 0.0
                parts.append(("rod", Cylinder(foot, foot + [0, legs_height, 0], leg_radius)))
    return parts


def _panels(rng, size, camera, focal) -> list[tuple[str, Primitive]]:
    """Slanted planes: boards leaning on walls, tilted sheets, some with carved relief."""
    parts: list[tuple[str, Primitive]] = []
    for _ in range(rng.integers(1, 4)):
        half = np.array([rng.uniform(0.2, 1.2), rng.uniform(0.3, 1.5), rng.uniform(0.01, 0.04)])
        rotation = _random_rotation(rng)
        center = _floor_point(rng, size, camera, 0.8)
        center[1] = rng.uniform(0.4, size[1] - 0.4)
        if rng.random() < 0.3:  # relief on the panel's face, facing the camera
            normal = rotation[:, 2] * np.sign(rotation[:, 2] @ (camera.position - center))
            u = rotation[:, 0]
            corner = center - half[0] * u - half[1] * np.cross(normal, u)
            cell = 0.01
            shape = (max(2, int(2 * half[1] / cell)), max(2, int(2 * half[0] / cell)))
            heights = rng.uniform(0.01, 0.08) * fractal_noise(rng, shape, octaves=7)
            parts.append(("relief", _plane_relief(corner, u, normal, 2 * half[0], 2 * half[1],
                                                  heights.astype(np.float32))))
        else:
            parts.append(("box", Box(center, half, rotation)))
    return parts


def _wall_point(rng, size) -> np.ndarray:
    """A random point on a wall or the ceiling."""
    point = rng.uniform([0, 0.5, 0], size)
    axis = rng.choice([0, 1, 2], p=[0.4, 0.2, 0.4])
    point[axis] = size[axis] if axis == 1 or rng.random() < 0.5 else 0.0
    return point


def _wires(rng, size, camera, focal) -> list[tuple[str, Primitive]]:
    """Wires strung between walls and ceiling, 0.7–3 px wide at their middle."""
    return [("rod", _rod(camera, focal, _wall_point(rng, size), _wall_point(rng, size),
                         rng.uniform(0.7, 3.0)))
            for _ in range(rng.integers(1, 7))]


def _poles(rng, size, camera, focal) -> list[tuple[str, Primitive]]:
    """Upright and leaning poles, 1–4 px wide."""
    parts: list[tuple[str, Primitive]] = []
    for _ in range(rng.integers(1, 6)):
        foot = _floor_point(rng, size, camera, 0.2)
        lean = np.array([rng.normal(0, 0.3), 1.0, rng.normal(0, 0.3)])
        top = foot + lean / np.linalg.norm(lean) * rng.uniform(0.8, size[1])
        parts.append(("rod", _rod(camera, focal, foot, top, rng.uniform(1.0, 4.0))))
    return parts


def _foliage(rng, size, camera, focal) -> list[tuple[str, Primitive]]:
    """A plant: trunk, a few thin branches, and a crown of small leaves with gaps between."""
    parts: list[tuple[str, Primitive]] = []
    crown = rng.uniform([0.3, 0.2, 0.3], [1.2, 0.9, 1.2])
    foot = _floor_point(rng, size, camera, crown.max() + 0.2)
    center = foot + [0, min(rng.uniform(0.8, 2.2), size[1] - crown[1] - 0.1), 0]
    parts.append(("cylinder", Cylinder(foot, center, rng.uniform(0.02, 0.08))))
    for _ in range(rng.integers(2, 7)):
        tip = center + crown * rng.uniform(-0.9, 0.9, 3)
        parts.append(("rod", _rod(camera, focal, center, tip, rng.uniform(1.0, 3.0))))
    count = rng.integers(80, 400)
    directions = rng.normal(size=(count, 3))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    radii = rng.uniform(0.5, 1.0, count) ** 0.3  # most leaves near the crown's surface
    normals = rng.normal(size=(count, 3))
    normals /= np.linalg.norm(normals, axis=1, keepdims=True)
    leaf_size = rng.uniform(0.02, 0.08)
    for direction, radius, normal in zip(directions, radii, normals, strict=True):
        leaf = center + crown * direction * radius
        parts.append(("leaf", Disc(leaf, normal, leaf_size * rng.uniform(0.6, 1.4))))
    return parts


def _lattice(rng, size, camera, focal) -> list[tuple[str, Primitive]]:
    """A fence or trellis: a grid of thin bars in a vertical plane, mostly gaps."""
    width, height = rng.uniform(0.8, 3.0), rng.uniform(0.6, min(2.5, size[1]))
    foot = _floor_point(rng, size, camera, 0.5)
    along = _yaw_rotation(rng.uniform(0, np.pi))[:, 0]
    spacing = rng.uniform(0.05, 0.25)
    pixels = rng.uniform(1.0, 4.0)
    parts: list[tuple[str, Primitive]] = []
    for offset in np.arange(0, width, spacing):
        start = foot + offset * along
        parts.append(("rod", _rod(camera, focal, start, start + [0, height, 0], pixels)))
    for level in np.arange(spacing / 2, height, spacing * rng.uniform(1, 3)):
        start = foot + [0, level, 0]
        parts.append(("rod", _rod(camera, focal, start, start + width * along, pixels)))
    return parts
