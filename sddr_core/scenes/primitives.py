"""Analytic ray–primitive intersections, vectorised over a block of rays from one camera centre.

Every primitive answers the same question: for rays `origin + t · d`, where is the first hit
with t > 0 (inf where there is none)? The caller passes directions with a camera-space z of 1,
so t is the z-depth directly. Rays come as three (h, w) float32 arrays, one per world axis
(`dirs[0]`, `dirs[1]`, `dirs[2]`), usually a screen-space crop around the primitive.

Thin primitives are computed in forms that stay exact in float32: the cylinder's side uses
the ray-to-axis distance (not a quadratic's discriminant, which cancels for millimetre radii
seen from metres away), and everything origin-only is computed once in float64.

`Heightfield` is the one primitive without a closed form: a solid block whose top is a height
grid, intersected by marching each ray through the block and refining the crossing
(bisection, then a secant step); it carries the fractal floors and the fine relief.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Protocol

import cv2
import numpy as np

_EPS = 1e-4  # hits nearer than this along t (0.1 mm of depth) are ignored: self-hits, the origin
_INF = np.float32(np.inf)


class Primitive(Protocol):
    """What the renderer needs from a shape."""

    kind: ClassVar[str]

    def bounding_sphere(self) -> tuple[np.ndarray, float] | None:
        """(centre (3,), radius) enclosing the shape, or None when it is unbounded."""

    def intersect(self, origin: np.ndarray, dirs: np.ndarray, nearest: np.ndarray) -> np.ndarray:
        """t of the first hit (> 0) of each ray, inf on a miss.

        `origin` (3,) float64; `dirs` (3, h, w) float32; `nearest` (h, w): the nearest hit so
        far, which a primitive may use to skip work behind it (it must still return a valid
        t or inf; the renderer takes the minimum).
        """


def _dot(dirs: np.ndarray, vector: np.ndarray) -> np.ndarray:
    """d · vector per ray, (h, w) float32."""
    v = np.asarray(vector, dtype=np.float32)
    return dirs[0] * v[0] + dirs[1] * v[1] + dirs[2] * v[2]


def _hits(t: np.ndarray, hit: np.ndarray) -> np.ndarray:
    """t where `hit` and t > _EPS, inf elsewhere."""
    return np.where(hit & (t > _EPS), t, _INF).astype(np.float32, copy=False)


@dataclass(frozen=True)
class Sphere:
    """Centre (3,) and radius in metres."""

    center: np.ndarray
    radius: float
    kind: ClassVar[str] = "sphere"

    def bounding_sphere(self) -> tuple[np.ndarray, float]:
        return np.asarray(self.center, float), float(self.radius)

    def intersect(self, origin: np.ndarray, dirs: np.ndarray, nearest: np.ndarray) -> np.ndarray:
        oc = origin - np.asarray(self.center, float)
        c = np.float32(oc @ oc - self.radius**2)  # > 0: the camera is outside
        a = dirs[0] ** 2 + dirs[1] ** 2 + dirs[2] ** 2
        b = _dot(dirs, oc)  # half the usual b
        disc = b * b - a * c
        with np.errstate(invalid="ignore"):
            t = (-b - np.sqrt(disc)) / a
        return _hits(t, disc >= 0)


def _slab_interval(
    origin_local: np.ndarray, dirs_local: list[np.ndarray], low: np.ndarray, high: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(t_in, t_out) of each ray with the axis-aligned box [low, high] (in the box's frame)."""
    t_in = np.full(dirs_local[0].shape, -np.inf, np.float32)
    t_out = np.full(dirs_local[0].shape, np.inf, np.float32)
    with np.errstate(divide="ignore", invalid="ignore"):
        for axis in range(3):
            inv = np.float32(1.0) / dirs_local[axis]
            t0 = (np.float32(low[axis] - origin_local[axis])) * inv
            t1 = (np.float32(high[axis] - origin_local[axis])) * inv
            np.maximum(t_in, np.fmin(t0, t1), out=t_in)
            np.minimum(t_out, np.fmax(t0, t1), out=t_out)
    return t_in, t_out


def _to_local(rotation: np.ndarray, dirs: np.ndarray) -> list[np.ndarray]:
    """Directions in a frame whose axes are `rotation`'s columns."""
    return [_dot(dirs, rotation[:, axis]) for axis in range(3)]


@dataclass(frozen=True)
class Box:
    """An oriented box: centre (3,), half sizes (3,) along `rotation`'s columns (3, 3)."""

    center: np.ndarray
    half_sizes: np.ndarray
    rotation: np.ndarray
    kind: ClassVar[str] = "box"

    def bounding_sphere(self) -> tuple[np.ndarray, float]:
        return np.asarray(self.center, float), float(np.linalg.norm(self.half_sizes))

    def intersect(self, origin: np.ndarray, dirs: np.ndarray, nearest: np.ndarray) -> np.ndarray:
        rotation = np.asarray(self.rotation, float)
        local = rotation.T @ (origin - np.asarray(self.center, float))
        half = np.asarray(self.half_sizes, float)
        t_in, t_out = _slab_interval(local, _to_local(rotation, dirs), -half, half)
        return _hits(t_in, t_in <= t_out)


@dataclass(frozen=True)
class Room:
    """The inside of an axis-aligned box [low, high]: floor, walls and ceiling seen from within."""

    low: np.ndarray
    high: np.ndarray
    kind: ClassVar[str] = "room"

    def bounding_sphere(self) -> None:
        return None

    def intersect(self, origin: np.ndarray, dirs: np.ndarray, nearest: np.ndarray) -> np.ndarray:
        _, t_out = _slab_interval(origin, list(dirs), np.asarray(self.low), np.asarray(self.high))
        return _hits(t_out, np.isfinite(t_out))


@dataclass(frozen=True)
class Cylinder:
    """A capped cylinder from `start` to `end` (3,) with `radius`; rods and wires are thin ones."""

    start: np.ndarray
    end: np.ndarray
    radius: float
    kind: ClassVar[str] = "cylinder"

    def bounding_sphere(self) -> tuple[np.ndarray, float]:
        start, end = np.asarray(self.start, float), np.asarray(self.end, float)
        return (start + end) / 2, float(np.linalg.norm(end - start) / 2 + self.radius)

    def intersect(self, origin: np.ndarray, dirs: np.ndarray, nearest: np.ndarray) -> np.ndarray:
        start, end = np.asarray(self.start, float), np.asarray(self.end, float)
        length = float(np.linalg.norm(end - start))
        w = (end - start) / length
        oc = origin - start
        # 1. a cheap exact pre-test: a hit lies within r of the axis line, so the ray's angle
        # to the plane through the camera and the axis has sin <= r / (D - r), D the camera's
        # distance to the axis line (|d| <= its largest value in the block, at a corner)
        normal = np.cross(oc, w)
        distance = float(np.linalg.norm(normal))
        flat = dirs.reshape(3, -1)
        if distance > 2 * self.radius:
            corners = dirs[:, [0, 0, -1, -1], [0, -1, 0, -1]]
            longest = float(np.sqrt((corners.astype(float) ** 2).sum(axis=0)).max())
            limit = np.float32(self.radius / (distance - self.radius) * longest)
            candidates = np.flatnonzero(np.abs(_dot(flat, normal / distance)) <= limit)
        else:
            candidates = np.arange(flat.shape[1])
        result = np.full(dirs.shape[1:], _INF, np.float32)
        result.reshape(-1)[candidates] = self._first_hit(oc, w, length, flat[:, candidates])
        return result

    def _first_hit(self, oc: np.ndarray, w: np.ndarray, length: float, d: np.ndarray
                   ) -> np.ndarray:
        """t of the side or a cap for rays `d` (3, n), inf on a miss."""
        oc_w = float(oc @ w)
        oc_perp = oc - oc_w * w
        d_w = _dot(d, w)
        # n = d × w: its length is |d⊥| and oc · n / |n| the signed ray-to-axis distance
        n = [d[1] * w[2] - d[2] * w[1], d[2] * w[0] - d[0] * w[2], d[0] * w[1] - d[1] * w[0]]
        nn = n[0] ** 2 + n[1] ** 2 + n[2] ** 2
        r2 = np.float32(self.radius**2)
        with np.errstate(divide="ignore", invalid="ignore"):
            distance = (n[0] * oc[0] + n[1] * oc[1] + n[2] * oc[2]) / np.sqrt(nn)
            oc_d_perp = _dot(d, oc) - np.float32(oc_w) * d_w  # oc⊥ · d⊥
            t_side = (-oc_d_perp - np.sqrt(r2 - distance**2) * np.sqrt(nn)) / nn
            along = np.float32(oc_w) + t_side * d_w
            best = _hits(t_side, (distance**2 <= r2) & (along >= 0) & (along <= length))
            for cap in (0.0, length):
                t_cap = (np.float32(cap - oc_w)) / d_w
                radial2 = np.float32(oc_perp @ oc_perp) + 2 * t_cap * oc_d_perp + t_cap**2 * nn
                best = np.minimum(best, _hits(t_cap, radial2 <= r2))
        return best


@dataclass(frozen=True)
class Disc:
    """A flat disc (a leaf): centre (3,), unit normal (3,), radius."""

    center: np.ndarray
    normal: np.ndarray
    radius: float
    kind: ClassVar[str] = "disc"

    def bounding_sphere(self) -> tuple[np.ndarray, float]:
        return np.asarray(self.center, float), float(self.radius)

    def intersect(self, origin: np.ndarray, dirs: np.ndarray, nearest: np.ndarray) -> np.ndarray:
        normal = np.asarray(self.normal, float)
        to_center = np.asarray(self.center, float) - origin
        with np.errstate(divide="ignore", invalid="ignore"):
            t = np.float32(normal @ to_center) / _dot(dirs, normal)
            offset2 = sum((t * dirs[axis] - np.float32(to_center[axis])) ** 2 for axis in range(3))
        return _hits(t, offset2 <= np.float32(self.radius**2))


def sample_grid(grid: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Bilinear lookup of float32 `grid` at fractional pixel positions (x, y), edges clamped."""
    count = x.size
    columns = 4096  # cv2.remap wants both map sides below 32767
    rows = max(1, -(-count // columns))
    map_x = np.zeros(rows * columns, np.float32)
    map_y = np.zeros(rows * columns, np.float32)
    map_x[:count], map_y[:count] = x, y
    shape = (rows, columns)
    values = cv2.remap(grid, map_x.reshape(shape), map_y.reshape(shape), cv2.INTER_LINEAR,
                       borderMode=cv2.BORDER_REPLICATE)
    return values.reshape(-1)[:count]


@dataclass(frozen=True)
class Heightfield:
    """A solid block on the rectangle `corner + a·u + b·v` (a in [0, size_u], b in [0, size_v])
    whose top is at heights[j, i] (metres, ≥ 0) along n = u × v over a grid spanning it.

    Seen from the n side it is relief: a fractal floor, bricks or bumps on a wall, a carved
    panel. Each ray marches through the block `step_cells` grid cells at a time (at least 2,
    at most `steps` samples), then bisection and a secant step refine the first crossing; a
    bump narrower than a step along a grazing ray can be stepped over (the fractal grids here
    have no detail finer than about 2.7 cells).
    """

    corner: np.ndarray
    u_axis: np.ndarray
    v_axis: np.ndarray
    size_u: float
    size_v: float
    heights: np.ndarray
    steps: int = 32
    step_cells: float = 2.0
    kind: ClassVar[str] = "heightfield"

    def frame(self) -> np.ndarray:
        """(3, 3): u, v and the normal n as columns."""
        u, v = np.asarray(self.u_axis, float), np.asarray(self.v_axis, float)
        return np.stack([u, v, np.cross(u, v)], axis=1)

    def bounding_sphere(self) -> tuple[np.ndarray, float]:
        frame = self.frame()
        extent = np.array([self.size_u, self.size_v, float(self.heights.max())])
        return np.asarray(self.corner, float) + frame @ (extent / 2), float(np.linalg.norm(extent))

    def intersect(self, origin: np.ndarray, dirs: np.ndarray, nearest: np.ndarray) -> np.ndarray:
        frame = self.frame()
        local = frame.T @ (origin - np.asarray(self.corner, float))
        d_local = _to_local(frame, dirs)
        top = float(self.heights.max())
        t_in, t_out = _slab_interval(
            local, d_local, np.zeros(3), np.array([self.size_u, self.size_v, top])
        )
        t_in = np.maximum(t_in, np.float32(_EPS))
        t_out = np.minimum(t_out, nearest)
        result = np.full(dirs.shape[1:], _INF, np.float32)
        active = np.flatnonzero(t_in < t_out)
        if active.size == 0:
            return result
        grid_h, grid_w = self.heights.shape
        scale = np.array([(grid_w - 1) / self.size_u, (grid_h - 1) / self.size_v, 1.0])
        o = (local * scale).astype(np.float32)  # in grid pixels (u, v) and metres (n)
        d = [d_local[axis].reshape(-1)[active] * np.float32(scale[axis]) for axis in range(3)]
        lo, hi = t_in.reshape(-1)[active], t_out.reshape(-1)[active]

        def above(t: np.ndarray, ray_dirs: list[np.ndarray]) -> np.ndarray:
            """Height over the surface at t of rays `ray_dirs` (<= 0: on or inside the block)."""
            x, y = o[0] + t * ray_dirs[0], o[1] + t * ray_dirs[1]
            return o[2] + t * ray_dirs[2] - sample_grid(self.heights, x, y)

        # 1. march: the first sample on or below the surface brackets the hit
        cells = (hi - lo) * np.sqrt(d[0] ** 2 + d[1] ** 2)  # grid cells crossed
        samples = np.clip(np.ceil(cells / self.step_cells), 2, self.steps).astype(np.float32)
        step = (hi - lo) / samples
        rays = np.arange(active.size)
        bracket_lo, bracket_hi = np.empty_like(lo), np.full_like(lo, np.nan)
        entered = above(lo, d) <= 0  # through a side wall, or onto a flat top
        bracket_lo[entered], bracket_hi[entered] = lo[entered], lo[entered]
        remaining, previous_t = rays[~entered], lo[~entered]
        for k in range(1, self.steps + 1):
            t = lo[remaining] + step[remaining] * np.float32(k)
            inside = above(t, [axis[remaining] for axis in d]) <= 0
            hit_rays = remaining[inside]
            bracket_lo[hit_rays], bracket_hi[hit_rays] = previous_t[inside], t[inside]
            going = ~inside & (samples[remaining] > k)  # the others left the block: a miss
            remaining, previous_t = remaining[going], t[going]
            if remaining.size == 0:
                break
        hit = np.flatnonzero(np.isfinite(bracket_hi))
        # 2. refine each bracket [a (above), b (on or below)]: 4 halvings, then a secant step
        # (regula falsi converges one-sided here: 6 of its steps left errors of 6 cm)
        a, b = bracket_lo[hit], bracket_hi[hit]
        hit_dirs = [axis[hit] for axis in d]
        fa, fb = above(a, hit_dirs), above(b, hit_dirs)
        for _ in range(4):
            m = (a + b) / 2
            fm = above(m, hit_dirs)
            below = fm <= 0
            b, fb = np.where(below, m, b), np.where(below, fm, fb)
            a, fa = np.where(below, a, m), np.where(below, fa, fm)
        result.reshape(-1)[active[hit]] = self._secant(a, b, fa, fb)
        return result

    @staticmethod
    def _secant(a: np.ndarray, b: np.ndarray, fa: np.ndarray, fb: np.ndarray) -> np.ndarray:
        """Where the line through (a, fa) and (b, fb) crosses 0, kept in [a, b]."""
        with np.errstate(divide="ignore", invalid="ignore"):
            m = np.where(fa - fb > 0, a + (b - a) * fa / (fa - fb), b)
        return np.clip(m, a, b)
