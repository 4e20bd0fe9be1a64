"""Depth map → camera-aligned grid mesh, in numpy only (no bpy), so it is unit-tested outside
Blender and the add-on's operators only copy its arrays into Blender.

Conventions (Blender's camera): the camera sits at the origin looking down −Z with +Y up. Pixel
(u right, v down) has its centre at (u, v) in pixel coordinates, so the principal point of a
centred camera is ((W−1)/2, (H−1)/2) and Blender's normalised view coordinate of pixel u's centre
is (u + 0.5)/W. A pixel at distance Z along the view axis unprojects to
``X = (u − cx)/fx·Z``, ``Y = −(v − cy)/fy·Z``, ``Z_cam = −Z``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

DEPTH_KINDS = ("DEPTH", "RELATIVE_DEPTH", "DISPARITY")
"""How the values of a depth map turn into distances: DEPTH is distance × `scale`;
RELATIVE_DEPTH (larger = farther) maps linearly onto near…far; DISPARITY (larger = nearer, what
Depth Anything and so sddr give) maps its inverse onto near…far."""

ROBUST_PERCENTILES = (0.1, 99.9)
"""Relative maps are normalised between these percentiles, so a few extreme pixels (holes,
reflections) cannot squash the scene (the same choice as sddr's network inputs)."""


class GeometryError(ValueError):
    """A depth map or setting the mesh cannot be built from; the message names it."""


@dataclass(frozen=True)
class Intrinsics:
    """A pinhole camera for an image of `width` × `height` pixels (focal lengths and principal
    point in pixels)."""

    width: int
    height: int
    fx: float
    fy: float
    cx: float
    cy: float

    @classmethod
    def from_fov(cls, width: int, height: int, fov_degrees: float) -> Intrinsics:
        """Square pixels, centred principal point, `fov_degrees` across the image's width."""
        _check_size(width, height)
        if not 0 < fov_degrees < 180:
            raise GeometryError(f"fov: {fov_degrees}° is not between 0 and 180 degrees")
        fx = width / (2 * math.tan(math.radians(fov_degrees) / 2))
        return cls(width, height, fx, fx, (width - 1) / 2, (height - 1) / 2)

    @classmethod
    def from_lens(cls, width: int, height: int, focal_mm: float,
                  sensor_mm: float) -> Intrinsics:
        """A focal length and a sensor width in millimetres (the sensor spans the image width)."""
        if focal_mm <= 0 or sensor_mm <= 0:
            raise GeometryError(f"focal length {focal_mm} mm and sensor width {sensor_mm} mm "
                                "must both be positive")
        fov = math.degrees(2 * math.atan(sensor_mm / (2 * focal_mm)))
        return cls.from_fov(width, height, fov)

    @property
    def fov_degrees(self) -> float:
        """The horizontal field of view."""
        return math.degrees(2 * math.atan(self.width / (2 * self.fx)))


@dataclass(frozen=True)
class GridMesh:
    """A quad mesh ready for Blender's bulk writes.

    positions: (N, 3) float32 camera-space vertices. pixels: (N, 2) int32, the (u, v) pixel each
    vertex comes from. corner_verts: (4·F,) int32, four vertex indices per quad, counter-clockwise
    seen from the camera (so normals face it). uvs: (4·F, 2) float32 per corner, the pixel
    centre ``((u + 0.5)/W, 1 − (v + 0.5)/H)``. cut: how many quads were removed across depth
    discontinuities.
    """

    positions: np.ndarray
    pixels: np.ndarray
    corner_verts: np.ndarray
    uvs: np.ndarray
    cut: int

    @property
    def face_count(self) -> int:
        return len(self.corner_verts) // 4


def grid_shape(width: int, height: int, step: int) -> tuple[int, int]:
    """(rows, columns) of vertices when every `step`-th pixel is kept, first pixel included."""
    _check_size(width, height)
    if step < 1:
        raise GeometryError(f"step: {step} must be 1 or more")
    return -(-height // step), -(-width // step)


def vertex_count(width: int, height: int, step: int) -> int:
    """Vertices of the full grid (before cutting drops vertices no face uses)."""
    rows, columns = grid_shape(width, height, step)
    return rows * columns


def step_for_vertex_count(width: int, height: int, target: int) -> int:
    """The smallest pixel step whose grid has at most `target` vertices (at least 2×2)."""
    if target < 4:
        raise GeometryError(f"target vertex count: {target} is below the 4 a quad needs")
    step = max(1, math.floor(math.sqrt(width * height / target)))
    while vertex_count(width, height, step) > target:
        step += 1
    return step


def distances(depth: np.ndarray, kind: str = "DEPTH", *, scale: float = 1.0,
              near: float = 1.0, far: float = 10.0) -> np.ndarray:
    """Distance along the view axis for each pixel of `depth` (H×W), as `kind` reads it
    (see DEPTH_KINDS); pixels without a usable value are NaN.

    Raises GeometryError when the map has no finite value, a relative map is constant, or the
    settings are out of range.
    """
    depth = _check_depth(depth)
    if kind == "DEPTH":
        if not 0 < scale < math.inf:
            raise GeometryError(f"depth scale: {scale} must be a positive finite number")
        z = depth.astype(np.float64) * scale
        z[~(np.isfinite(depth) & (z > 0))] = np.nan
        return _mesh_distances(z, too_far=f"depth scale {scale:g}",
                               too_near=f"depth scale {scale:g}")
    if kind not in DEPTH_KINDS:
        raise GeometryError(f"depth kind: {kind!r} is not one of {', '.join(DEPTH_KINDS)}")
    if not 0 < near < far < math.inf:
        raise GeometryError(f"near {near} and far {far}: need 0 < near < far, both finite")
    t = relative(depth).astype(np.float64)
    with np.errstate(over="ignore", invalid="ignore"):  # a near of 1e-320: refused below
        if kind == "RELATIVE_DEPTH":
            z = near + t * (far - near)
        else:
            z = 1.0 / (1.0 / far + t * (1.0 / near - 1.0 / far))
    return _mesh_distances(z, too_far=f"far {far:g}", too_near=f"near {near:g}")


def _mesh_distances(z: np.ndarray, too_far: str, too_near: str) -> np.ndarray:
    """`z` (float64, NaN = no value) as float32, which is what a Blender mesh stores: a
    distance beyond float32's range would become infinite, one below it 0 (a vertex at
    infinity, or one dropped as having no depth), so either is refused naming the setting
    that put it there (`too_far`, `too_near`)."""
    limits = np.finfo(np.float32)
    usable = ~np.isnan(z)
    with np.errstate(over="ignore"):
        out = z.astype(np.float32)
    if (usable & ~np.isfinite(out)).any():
        raise GeometryError(f"{too_far}: gives distances up to {np.nanmax(z):.3g}, beyond the "
                            f"largest a mesh can hold ({float(limits.max):.3g}); choose a "
                            "smaller value")
    if (usable & (out < limits.smallest_normal)).any():
        raise GeometryError(f"{too_near}: gives distances down to {np.nanmin(z):.3g}, below "
                            f"the smallest a mesh can hold ({float(limits.smallest_normal):.3g}); "
                            "choose a larger value")
    return out


def relative(depth: np.ndarray) -> np.ndarray:
    """`depth` scaled to [0, 1] between its robust low and high values (NaN stays NaN); a map
    with a single value is refused."""
    depth = _check_depth(depth).astype(np.float64)  # so a range near float32's max cannot overflow
    values = depth[np.isfinite(depth)]
    low, high = np.percentile(values, ROBUST_PERCENTILES)
    if not high > low:
        raise GeometryError("depth map is constant: a relative map needs at least two values")
    return np.clip((depth - low) / (high - low), 0.0, 1.0).astype(np.float32)


def grid_mesh(z: np.ndarray, intrinsics: Intrinsics, *, step: int = 1,
              cut_ratio: float | None = None) -> GridMesh:
    """The grid mesh of distances `z` (H×W, NaN = no value) seen through `intrinsics`.

    Every `step`-th pixel becomes a vertex and neighbouring vertices make quads. A quad is
    dropped when one of its corners has no value, or, when `cut_ratio` is given, when it
    straddles a depth discontinuity: max(Z)/min(Z) > 1 + cut_ratio over its corners (a
    scale-invariant test, so it means the same in metres or in relative units). Vertices that
    no remaining quad uses are dropped too.
    """
    height, width = z.shape if z.ndim == 2 else (0, 0)
    if (width, height) != (intrinsics.width, intrinsics.height):
        raise GeometryError(f"depth map is {width}×{height} but the camera is for "
                            f"{intrinsics.width}×{intrinsics.height} pixels")
    if cut_ratio is not None and not cut_ratio > 0:
        raise GeometryError(f"cut ratio: {cut_ratio} must be positive")
    rows, columns = grid_shape(width, height, step)
    if rows < 2 or columns < 2:
        raise GeometryError(f"step {step} leaves a {columns}×{rows} grid of a {width}×{height} "
                            "map: no quad fits; choose a smaller step")
    v, u = np.mgrid[0:height:step, 0:width:step]  # [rows, columns] each
    zs = z[::step, ::step].astype(np.float32)
    valid = np.isfinite(zs) & (zs > 0)

    # 1. Quads as the four corner indices into the full grid, counter-clockwise from the camera.
    index = np.arange(rows * columns, dtype=np.int32).reshape(rows, columns)
    quads = np.stack([index[:-1, :-1], index[1:, :-1], index[1:, 1:], index[:-1, 1:]],
                     axis=-1).reshape(-1, 4)  # [F, 4]
    flat_z = np.where(valid, zs, np.nan).ravel()
    corners = flat_z[quads]  # [F, 4]
    keep = np.isfinite(corners).all(axis=1)
    cut = 0
    if cut_ratio is not None:
        with np.errstate(invalid="ignore"):
            jump = corners.max(axis=1) > corners.min(axis=1) * (1 + cut_ratio)
        cut = int(np.count_nonzero(keep & jump))
        keep &= ~jump
    quads = quads[keep]

    # 2. Keep only the vertices the quads use, renumbered in grid order.
    used = np.zeros(rows * columns, dtype=bool)
    used[quads.ravel()] = True
    renumber = np.cumsum(used, dtype=np.int32) - 1
    corner_verts = renumber[quads.ravel()]  # [4F]

    # 3. Unproject the kept vertices through the pinhole.
    us, vs, zk = u.ravel()[used], v.ravel()[used], flat_z[used]
    positions = np.empty((len(zk), 3), dtype=np.float32)
    positions[:, 0] = (us - intrinsics.cx) / intrinsics.fx * zk
    positions[:, 1] = -(vs - intrinsics.cy) / intrinsics.fy * zk
    positions[:, 2] = -zk
    pixels = np.stack([us, vs], axis=1).astype(np.int32)  # [N, 2]

    # 4. Pixel-centre UVs per corner (Blender's V runs up).
    vertex_uv = np.empty((len(zk), 2), dtype=np.float32)
    vertex_uv[:, 0] = (us + 0.5) / width
    vertex_uv[:, 1] = 1.0 - (vs + 0.5) / height
    return GridMesh(positions, pixels, corner_verts, vertex_uv[corner_verts], cut)


def plane_distance(z: np.ndarray) -> float:
    """Where a displaced plane stands: the farthest robust distance of the scene, so the
    displacement (towards the camera) brings nearer parts forward."""
    values = z[np.isfinite(z)]
    if values.size == 0:
        raise GeometryError("depth map has no usable value")
    return float(np.percentile(values, ROBUST_PERCENTILES[1]))


def _check_size(width: int, height: int) -> None:
    if width < 2 or height < 2:
        raise GeometryError(f"image size {width}×{height}: need at least 2×2 pixels")


def _check_depth(depth: np.ndarray) -> np.ndarray:
    depth = np.asarray(depth)
    if depth.ndim != 2:
        raise GeometryError(f"depth map: expected a 2-D array, got shape {depth.shape}")
    if not np.issubdtype(depth.dtype, np.number):
        raise GeometryError(f"depth map: expected numbers, got {depth.dtype}")
    depth = depth.astype(np.float32, copy=False)
    if not np.isfinite(depth).any():
        raise GeometryError("depth map has no finite value (all NaN or infinite)")
    return depth
