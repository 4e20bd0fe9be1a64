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

from .robust_range import robust_range

DEPTH_KINDS = ("DEPTH", "RELATIVE_DEPTH", "DISPARITY")
"""How the values of a depth map turn into distances: DEPTH is distance × `scale`;
RELATIVE_DEPTH (larger = farther) maps linearly onto near…far; DISPARITY (larger = nearer, what
Depth Anything and so sddr give) maps its inverse onto near…far."""

RAMP_REACH = 16
"""Pixels a ramp may extend on either side of a pixel on it: depth from a network spreads a
one-pixel step over 10-20 px (sddr's refined maps about 12, docs/blender.md)."""
RAMP_SHOULDER = 0.25
"""A ramp ends where its pixel-to-pixel change falls below this fraction of its steepest change:
a flat or gently sloping side follows."""
PLANE_REACH = 0.25
"""At its default strength a displaced plane brings the scene's nearest part this fraction of
the way from the plane to the camera (at most 4/3 its size in the camera's view)."""
FLYING_FRACTION = 0.1
"""A pixel floats when it is more than this fraction of the step from both sides, the flying-
pixel rule of sddr's evaluation (docs/metrics.md)."""


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

    positions: (N, 3) float32 camera-space vertices. pixels: (N, 2) float32, the image
    coordinates (u, v) each vertex projects to: the first `grid_vertices` are the kept grid's
    pixel centres, in grid order; any after them belong to faces that close gaps
    (`closing_faces`, `border_faces`).
    corner_verts: (4·F,) int32, four vertex indices per quad, counter-clockwise seen from the
    camera (so normals face it). uvs: (4·F, 2) float32 per corner, the image point it shows,
    ``((u + 0.5)/W, 1 − (v + 0.5)/H)``. cut: how many quads straddled a depth discontinuity.
    """

    positions: np.ndarray
    pixels: np.ndarray
    corner_verts: np.ndarray
    uvs: np.ndarray
    cut: int
    grid_vertices: int

    @property
    def face_count(self) -> int:
        return len(self.corner_verts) // 4


def grid_shape(width: int, height: int, step: int) -> tuple[int, int]:
    """(rows, columns) of vertices when every `step`-th pixel is kept, first pixel included."""
    _check_size(width, height)
    if not (isinstance(step, int | np.integer) and not isinstance(step, bool) and step >= 1):
        raise GeometryError(f"step: {step!r} must be a whole number of pixels, 1 or more")
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


@dataclass(frozen=True)
class DistanceMap:
    """How a depth map's values become distances along the view axis, in three steps that a
    node tree can run per pixel as well as numpy: ``t = (value − low)/(high − low)``, clamped to
    [0, 1] when `clamp`; ``r = offset + gain·t``; the distance is ``1/r`` when `inverse`, else
    ``r``. Fixed by one map (an animation's first frame), it gives every frame the same units."""

    low: float
    high: float
    clamp: bool
    offset: float
    gain: float
    inverse: bool

    def apply(self, depth: np.ndarray) -> np.ndarray:
        """Distances (float64) of `depth`; NaN stays NaN."""
        t = (depth.astype(np.float64) - self.low) / (self.high - self.low)
        if self.clamp:  # float32, as the relative map itself is
            t = np.clip(t, 0.0, 1.0).astype(np.float32).astype(np.float64)
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            r = self.offset + t * self.gain
            return 1.0 / r if self.inverse else r

    def t_of_samples(self, offset: float, gain: float) -> tuple[float, float]:
        """(t₀, t₁) such that t = t₀ + t₁·sample (before clamping), for a frame whose values
        are ``offset + gain·sample``: how a node tree reads t straight from a texture."""
        span = self.high - self.low
        return (offset - self.low) / span, gain / span


def distance_map(depth: np.ndarray, kind: str = "DEPTH", *, scale: float = 1.0,
                 near: float = 1.0, far: float = 10.0) -> DistanceMap:
    """The map `distances` applies to `depth` (H×W) for `kind` (see DEPTH_KINDS): metric depth
    times `scale`, or the robust range of a relative map onto `near`…`far`.

    Raises GeometryError when the map has no finite value, a relative map is constant, or the
    settings are out of range.
    """
    depth = _check_depth(depth)
    if kind == "DEPTH":
        if not 0 < scale < math.inf:
            raise GeometryError(f"depth scale: {scale} must be a positive finite number")
        return DistanceMap(0.0, 1.0, False, 0.0, scale, False)
    if kind not in DEPTH_KINDS:
        raise GeometryError(f"depth kind: {kind!r} is not one of {', '.join(DEPTH_KINDS)}")
    if not 0 < near < far < math.inf:
        raise GeometryError(f"near {near} and far {far}: need 0 < near < far, both finite")
    low, high = _relative_range(depth)
    if kind == "RELATIVE_DEPTH":
        return DistanceMap(low, high, True, near, far - near, False)
    return DistanceMap(low, high, True, 1.0 / far, 1.0 / near - 1.0 / far, True)


def distances(depth: np.ndarray, kind: str = "DEPTH", *, scale: float = 1.0,
              near: float = 1.0, far: float = 10.0) -> np.ndarray:
    """Distance along the view axis for each pixel of `depth` (H×W), as `kind` reads it
    (see DEPTH_KINDS, `distance_map`); pixels without a usable value are NaN.

    Raises GeometryError when the map has no finite value, a relative map is constant, or the
    settings are out of range.
    """
    depth = _check_depth(depth)
    z = distance_map(depth, kind, scale=scale, near=near, far=far).apply(depth)
    if kind == "DEPTH":
        z[~(np.isfinite(depth) & (z > 0))] = np.nan
        return _mesh_distances(z, too_far=f"depth scale {scale:g}",
                               too_near=f"depth scale {scale:g}")
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
    """`depth` scaled to [0, 1] between its robust low and high values (`robust_range`, the
    rule sddr normalises its network inputs with), clipped; NaN stays NaN. A map with a single
    value is refused."""
    depth = _check_depth(depth).astype(np.float64)  # so a range near float32's max cannot overflow
    low, high = _relative_range(depth)
    return np.clip((depth - low) / (high - low), 0.0, 1.0).astype(np.float32)


def _relative_range(depth: np.ndarray) -> tuple[float, float]:
    low, high = _robust_range(depth)
    if not high > low:
        raise GeometryError("depth map is constant: a relative map needs at least two values")
    return low, high


def grid_mesh(z: np.ndarray, intrinsics: Intrinsics, *, step: int = 1,
              cut_ratio: float | None = None, close_gaps: bool = False) -> GridMesh:
    """The grid mesh of distances `z` (H×W, NaN = no value) seen through `intrinsics`.

    Every `step`-th pixel becomes a vertex and neighbouring vertices make quads. A quad is
    dropped when one of its corners has no value, or, when `cut_ratio` is given, when it
    straddles a depth discontinuity: max(Z)/min(Z) > 1 + cut_ratio over its corners (a
    scale-invariant test, so it means the same in metres or in relative units). Vertices that
    no remaining quad uses are dropped too. With `close_gaps`, each cut quad is closed instead
    (`closing_faces`) and the half pixel between the outer vertices and the image's edge is
    covered (`border_faces`), so the camera sees the mesh on every pixel that has depth.
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
    cut, cut_quads = np.zeros_like(keep), quads[:0]
    if cut_ratio is not None:
        with np.errstate(invalid="ignore"):
            jump = corners.max(axis=1) > corners.min(axis=1) * (1 + cut_ratio)
        cut = keep & jump
        if close_gaps:
            cut_quads = quads[cut]
        keep &= ~jump
    quads = quads[keep]

    # 2. Keep only the vertices the quads use, renumbered in grid order.
    used = np.zeros(rows * columns, dtype=bool)
    used[quads.ravel()] = True
    used[cut_quads.ravel()] = True
    renumber = np.cumsum(used, dtype=np.int32) - 1
    corner_verts = renumber[quads.ravel()]  # [4F]
    grid_pixels = np.stack([u.ravel(), v.ravel()], axis=1).astype(np.float32)  # [rows·columns, 2]
    pixels, vertex_z = grid_pixels[used], flat_z[used]
    corner_pixels = pixels[corner_verts]

    # 3. Faces closing the gaps, with their own vertices after the grid's.
    if close_gaps:
        closing = closing_faces(grid_pixels[cut_quads], flat_z[cut_quads],
                                renumber[cut_quads], first_vertex=len(pixels))
        border = border_faces(u[0], v[:, 0], np.where(used, flat_z, np.nan).reshape(rows, -1),
                              width, height, first_vertex=len(pixels) + len(closing.depths))
        pixels = np.concatenate([pixels, closing.pixels, border.pixels])
        vertex_z = np.concatenate([vertex_z, closing.depths, border.depths])
        corner_verts = np.concatenate([corner_verts, closing.corner_verts, border.corner_verts])
        corner_pixels = np.concatenate([corner_pixels, closing.corner_pixels,
                                        border.corner_pixels])

    # 4. Unproject the vertices through the pinhole.
    positions = np.empty((len(vertex_z), 3), dtype=np.float32)
    positions[:, 0] = (pixels[:, 0] - intrinsics.cx) / intrinsics.fx * vertex_z
    positions[:, 1] = -(pixels[:, 1] - intrinsics.cy) / intrinsics.fy * vertex_z
    positions[:, 2] = -vertex_z

    # 5. Pixel-centre UVs per corner (Blender's V runs up).
    uvs = np.empty((len(corner_pixels), 2), dtype=np.float32)
    uvs[:, 0] = (corner_pixels[:, 0] + 0.5) / width
    uvs[:, 1] = 1.0 - (corner_pixels[:, 1] + 0.5) / height
    return GridMesh(positions, pixels, corner_verts, uvs, int(np.count_nonzero(cut)),
                    int(np.count_nonzero(used)))


@dataclass(frozen=True)
class AddedFaces:
    """Faces added to the grid: their new vertices (image coordinates, distances), four vertex
    indices per face, and the image coordinates each corner takes its colour from."""

    pixels: np.ndarray
    depths: np.ndarray
    corner_verts: np.ndarray
    corner_pixels: np.ndarray


_NEXT, _PREVIOUS, _OPPOSITE = [1, 2, 3, 0], [3, 0, 1, 2], [2, 3, 0, 1]


def closing_faces(pixels: np.ndarray, depths: np.ndarray, vertices: np.ndarray, *,
                  first_vertex: int) -> AddedFaces:
    """What fills cut quads, the way 3D-photo tools close a depth edge.

    pixels [C, 4, 2], depths [C, 4] and vertices [C, 4] (mesh indices) are the corners of C cut
    quads. Each corner is near or far (below or above the quad's middle in log depth). Two
    things fill the quad: (a) the background extended under the foreground: the quad itself
    with every near corner replaced by a copy at that pixel but at its far neighbours' depth
    (their mean; the opposite corner's when both neighbours are near) and their colour, so the
    camera sees background, not the world, between the two sides, and a camera moved sideways
    sees the background go on behind the foreground's edge; (b) the foreground's own half of
    the cell: for each near corner, the quarter of the quad around it, at the near depth, so a
    foreground pixel covers its whole pixel square (a 1-pixel pole keeps its width) instead of
    ending at its centre. New vertices are numbered from `first_vertex`.
    """
    log_depth = np.log(depths)
    middle = (log_depth.min(axis=1) + log_depth.max(axis=1)) / 2
    near = log_depth < middle[:, None]  # [C, 4], at least one near and one far corner
    far = ~near
    # (a) the background, continued under the near corners
    weights = np.stack([far[:, _NEXT], far[:, _PREVIOUS]], axis=-1).astype(np.float32)
    total = weights.sum(axis=-1)  # [C, 4]
    lonely = total == 0
    shared = np.maximum(total, 1)
    behind_z = (depths[:, _NEXT] * weights[..., 0] + depths[:, _PREVIOUS] * weights[..., 1]
                ) / shared
    behind_z[lonely] = depths[:, _OPPOSITE][lonely]
    colour = (pixels[:, _NEXT] * weights[..., :1] + pixels[:, _PREVIOUS] * weights[..., 1:]
              ) / shared[..., None]
    colour[lonely] = pixels[:, _OPPOSITE][lonely]
    copies = int(np.count_nonzero(near))
    background = vertices.copy()
    background[near] = first_vertex + np.arange(copies, dtype=np.int32)
    background_colour = np.where(near[..., None], colour, pixels)
    # (b) the foreground's quarter of the cell around each near corner
    quad, corner = np.nonzero(near)
    own_pixel, own_z = pixels[quad, corner], depths[quad, corner]

    def halfway(to: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The edge midpoint towards corner `to`, at the mean depth when it is near too."""
        other_z = depths[quad, to]
        return ((own_pixel + pixels[quad, to]) / 2,
                np.where(near[quad, to], (own_z + other_z) / 2, own_z))

    (next_pixel, next_z), (previous_pixel, previous_z) = (halfway(np.take(_NEXT, corner)),
                                                          halfway(np.take(_PREVIOUS, corner)))
    centre_pixel = pixels.mean(axis=1)[quad]
    centre_z = ((depths * near).sum(axis=1) / near.sum(axis=1))[quad]
    quarters = len(quad)
    first = first_vertex + copies + np.arange(quarters, dtype=np.int32)
    skirt = np.stack([vertices[quad, corner], first, first + quarters, first + 2 * quarters],
                     axis=1)
    skirt_pixels = np.stack([own_pixel, next_pixel, centre_pixel, previous_pixel], axis=1)
    # neighbouring quads make the same copies and midpoints: one vertex each, found by a key
    # of the half-pixel position and the depth's bits
    new_pixels = np.concatenate([pixels[near], next_pixel, centre_pixel, previous_pixel])
    new_depths = np.concatenate([behind_z[near], next_z, centre_z, previous_z]
                                ).astype(np.float32)
    half = np.round(2 * new_pixels + 1).astype(np.int64)  # ≥ 0 on the half-pixel lattice
    key = ((half[:, 0] * (2 * int(half[:, 1].max(initial=0)) + 2) + half[:, 1]) << 32
           | new_depths.view(np.int32).astype(np.int64) & 0xFFFFFFFF)
    _, first, same = np.unique(key, return_index=True, return_inverse=True)
    corner_verts = np.concatenate([background.ravel(), skirt.ravel()])
    added = corner_verts >= first_vertex
    corner_verts[added] = first_vertex + same.ravel()[corner_verts[added] - first_vertex]
    return AddedFaces(
        pixels=new_pixels[first].astype(np.float32), depths=new_depths[first],
        corner_verts=corner_verts.astype(np.int32),
        corner_pixels=np.concatenate([background_colour.reshape(-1, 2),
                                      skirt_pixels.reshape(-1, 2)]).astype(np.float32))


def border_faces(columns: np.ndarray, rows: np.ndarray, depths: np.ndarray, width: int,
                 height: int, *, first_vertex: int) -> AddedFaces:
    """Flat rectangles from the grid's outer vertices to the image's edge.

    The grid ends at the outer pixels' centres (`columns`, `rows`: the grid's image
    coordinates; `depths`: rows × columns, NaN for vertices the mesh does not keep), so without
    these the camera would see past the mesh on the outer half of every border pixel. Each
    outer vertex gets its own rectangle at its own depth, spanning halfway to its neighbours
    along the border: no sheet across a discontinuity.
    """
    def halfway(centres: np.ndarray, first: float, last: float):
        middles = (centres[:-1] + centres[1:]) / 2
        return np.concatenate([[first], middles]), np.concatenate([middles, [last]])

    left, right = halfway(columns, -0.5, width - 0.5)  # top and bottom rows reach the corners
    top, bottom = halfway(rows, rows[0], rows[-1])  # the side columns stop at the rows
    sides = [  # (u0, u1, v0, v1, depth), one rectangle per outer vertex
        (left, right, -0.5, rows[0], depths[0]),
        (left, right, rows[-1], height - 0.5, depths[-1]),
        (-0.5, columns[0], top, bottom, depths[:, 0]),
        (columns[-1], width - 0.5, top, bottom, depths[:, -1]),
    ]
    u0, u1, v0, v1, z = (np.concatenate([np.broadcast_to(side[i], side[4].shape)
                                         for side in sides]) for i in range(5))
    kept = np.isfinite(z)
    u0, u1, v0, v1, z = u0[kept], u1[kept], v0[kept], v1[kept], z[kept]
    corners = np.stack([np.stack([u0, v0], -1), np.stack([u0, v1], -1),
                        np.stack([u1, v1], -1), np.stack([u1, v0], -1)], axis=1)  # [R, 4, 2]
    pixels = corners.reshape(-1, 2).astype(np.float32)
    return AddedFaces(pixels=pixels, depths=np.repeat(z, 4).astype(np.float32),
                      corner_verts=first_vertex + np.arange(len(pixels), dtype=np.int32),
                      corner_pixels=pixels)


_DIRECTIONS = np.array([(0, 1), (1, 1), (1, 0), (1, -1), (0, -1), (-1, -1), (-1, 0), (-1, 1)],
                       dtype=np.int64)
"""(dy, dx) of the eight neighbours, counter-clockwise from +x in steps of 45° (rows down)."""


def snap_ramps(z: np.ndarray, cut_ratio: float, reach: int = RAMP_REACH) -> np.ndarray:
    """`z` with the pixels that float on a depth ramp moved onto the ramp's nearer or farther
    side, whichever their depth is nearer to (in log depth, so the same in any units).

    A refined or predicted depth map spreads a discontinuity over a ramp of several pixels;
    meshed as is, the ramp becomes a sheet between foreground and background, or, cut, a
    dark outline. Each pixel whose log depth changes per pixel by at least RAMP_SHOULDER of
    log(1 + `cut_ratio`) and that lies within `reach` of a step larger than `cut_ratio` (log
    depth spanning more than that over its (2·`reach` + 1)² window) follows its depth gradient
    both ways while the depth keeps changing steeply (`_follow`): the two ends are the ramp's
    sides. When they differ by more than `cut_ratio` (a step a cut would remove, however gently
    the ramp spreads it), the pixel is moved to the nearer side if it is more than
    min(`cut_ratio`/2, FLYING_FRACTION of the step) from both (in log depth), so that what
    stays still joins its side without a cut, even where a neighbour's walk ended a little
    beyond. A slope that does not flatten within `reach` either way is a surface, not a ramp,
    and is left as it is. NaN stays NaN.
    """
    if not cut_ratio > 0:
        raise GeometryError(f"cut ratio: {cut_ratio} must be positive")
    if reach < 1:
        raise GeometryError(f"ramp reach: {reach} must be 1 pixel or more")
    z = np.asarray(z, dtype=np.float32)
    with np.errstate(invalid="ignore", divide="ignore"):
        log_z = np.log(np.where(z > 0, z, np.nan))
    steepness = math.log1p(cut_ratio)
    candidates = _ramp_candidates(log_z, steepness, reach)
    ys, xs = np.nonzero(candidates)
    if ys.size == 0:
        return z
    gy, gx = np.gradient(np.nan_to_num(log_z))  # only candidates' read, all finite there
    gy, gx = gy[ys, xs], gx[ys, xs]
    octant = np.round(np.arctan2(gy, gx) / (np.pi / 4)).astype(np.int64) % 8
    towards_far = _DIRECTIONS[octant]  # [n, 2]: the way depth grows
    here = log_z[ys, xs]
    slope = np.hypot(gy, gx)
    far, far_ended = _follow(log_z, ys, xs, towards_far, here, slope, reach)
    near, near_ended = _follow(-log_z, ys, xs, -towards_far, -here, slope, reach)
    near = -near
    step = far - near
    margin = np.minimum(steepness / 2, FLYING_FRACTION * step)
    floats = (far_ended & near_ended & (step > steepness)
              & (here - near > margin) & (far - here > margin))
    snapped = np.where(here - near < far - here, near, far)
    out = z.copy()
    out[ys[floats], xs[floats]] = np.exp(snapped[floats])
    return out


def _ramp_candidates(log_z: np.ndarray, steepness: float, reach: int) -> np.ndarray:
    """Pixels changing by at least RAMP_SHOULDER·steepness per pixel to a neighbour (in either
    axis) whose (2·reach + 1)² window spans more than `steepness` of log depth."""
    with np.errstate(invalid="ignore"):
        across = np.abs(np.diff(log_z, axis=1))
        down = np.abs(np.diff(log_z, axis=0))
    change = np.zeros_like(log_z)
    for diff, axis in ((across, 1), (down, 0)):
        diff = np.nan_to_num(diff)
        before = [slice(None)] * 2
        after = [slice(None)] * 2
        before[axis], after[axis] = slice(None, -1), slice(1, None)
        np.maximum(change[tuple(before)], diff, out=change[tuple(before)])
        np.maximum(change[tuple(after)], diff, out=change[tuple(after)])
    spread = _window(log_z, reach, np.fmax) - _window(log_z, reach, np.fmin)
    with np.errstate(invalid="ignore"):
        return (spread > steepness) & (change >= RAMP_SHOULDER * steepness)


def _window(image: np.ndarray, reach: int, combine: np.ufunc) -> np.ndarray:
    """`combine` (np.fmax or np.fmin: NaN skipped) of each pixel's (2·reach + 1)² window,
    clipped at the borders; separable, by doubling: log2(reach) passes an axis, not reach."""
    width = 2 * reach + 1
    for axis in (0, 1):
        lines = np.moveaxis(image, axis, 0)
        # edge values repeated: a max or min over them is the clipped window's
        run = np.concatenate([lines[:1].repeat(reach, 0), lines, lines[-1:].repeat(reach, 0)])
        covered = 1  # run[i] combines the entries i … i + covered − 1
        while 2 * covered <= width:
            run = combine(run[:-covered], run[covered:])
            covered *= 2
        run = combine(run[:len(run) - (width - covered)], run[width - covered:])
        image = np.moveaxis(run, 0, axis)
    return image


def _follow(log_z: np.ndarray, ys: np.ndarray, xs: np.ndarray, direction: np.ndarray,
            start: np.ndarray, slope: np.ndarray, reach: int):
    """Walk from each (ys, xs) along `direction` while log depth grows that way by at least
    RAMP_SHOULDER of the steepest change seen (starting from `slope`, the pixel's own).

    Returns (log depth where the walk stopped, whether it stopped within `reach` (at the image's
    edge or a pixel without depth too)).
    """
    height, width = log_z.shape
    end, peak = start.copy(), slope.copy()
    ended = np.zeros(len(ys), dtype=bool)
    walking = np.arange(len(ys))
    for distance in range(1, reach + 1):
        y = ys[walking] + distance * direction[walking, 0]
        x = xs[walking] + distance * direction[walking, 1]
        inside = (y >= 0) & (y < height) & (x >= 0) & (x < width)
        value = np.where(inside, log_z[np.clip(y, 0, height - 1), np.clip(x, 0, width - 1)],
                         np.nan)
        change = value - end[walking]
        with np.errstate(invalid="ignore"):
            going = (change > 0) & (change >= RAMP_SHOULDER * peak[walking])
        ended[walking[~going]] = True
        walking, value, change = walking[going], value[going], change[going]
        end[walking] = value
        peak[walking] = np.maximum(peak[walking], change)
        if walking.size == 0:
            break
    return end, ended


def plane_distance(z: np.ndarray) -> float:
    """Where a displaced plane stands: the farthest robust distance of the scene, so the
    displacement (towards the camera) brings nearer parts forward."""
    return _robust_range(z)[1]


def plane_strength(z: np.ndarray) -> float:
    """A displaced plane's default strength for distances `z`: 1 (true relief) when the scene's
    robust depth range is within PLANE_REACH of the plane's distance, else less, so that the
    nearest part comes PLANE_REACH of the way to the camera: the relief keeps the plane's
    footprint, so a part brought to distance d looks plane/d times its size, and at strength 1
    the nearest one filled the camera's view (4.9× on `sddr demo`'s refined.png)."""
    nearest, plane = _robust_range(z)
    return min(1.0, PLANE_REACH * plane / (plane - nearest)) if plane > nearest else 1.0


def _robust_range(z: np.ndarray) -> tuple[float, float]:
    try:
        return robust_range(z)
    except ValueError as err:  # no finite value in the sample
        raise GeometryError(f"depth map has no usable value ({err})") from None


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
