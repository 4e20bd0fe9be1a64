"""Procedural training scenes: analytic depth of each primitive, thin rods, rooms, determinism."""

from __future__ import annotations

import numpy as np
import pytest

from sddr_core.scenes import render_scene
from sddr_core.scenes.primitives import Box, Cylinder, Disc, Heightfield, Room, Sphere
from sddr_core.scenes.raycast import Camera, render

SIZE = 65  # odd: the centre pixel's ray is the optical axis


def _axis_camera(fov: float = 60.0, size: int = SIZE) -> Camera:
    """At the origin looking along +z; world axes are the camera's (x right, y down)."""
    return Camera.looking(size, size, fov, np.eye(3), np.zeros(3))


def _depth(primitive, camera: Camera | None = None, size: int = SIZE) -> np.ndarray:
    return render([primitive], camera or _axis_camera(size=size), size, size)[0]


def _yaw(angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])


def test_same_seed_gives_identical_scene():
    first, second = render_scene(11, 72, 96), render_scene(11, 72, 96)
    assert np.array_equal(first.depth, second.depth)
    assert np.array_equal(first.labels, second.labels)
    assert first.kinds == second.kinds


def test_different_seeds_give_different_scenes():
    depths = [render_scene(seed, 48, 64).depth for seed in range(4)]
    for i in range(4):
        for j in range(i + 1, 4):
            assert not np.allclose(depths[i], depths[j])


@pytest.mark.parametrize("shape", [(40, 160), (160, 40), (64, 64), (384, 1024)])
def test_any_aspect_ratio_gives_positive_finite_depth(shape):
    scene = render_scene(5, *shape)
    assert scene.depth.shape == scene.valid.shape == scene.labels.shape == shape
    assert scene.depth.dtype == np.float32
    assert scene.valid.all()  # a closed room: every ray hits something
    assert np.isfinite(scene.depth).all()
    assert scene.depth.min() > 0.05 and scene.depth.max() < 40
    assert (scene.labels >= 0).all() and scene.labels.max() < len(scene.kinds)


def test_scenes_span_a_realistic_depth_range():
    ranges = [render_scene(seed, 48, 64).depth for seed in range(12)]
    assert min(d.min() for d in ranges) < 1.5
    assert max(d.max() for d in ranges) > 8.0


def test_sphere_on_axis_has_analytic_depth_and_silhouette():
    camera = _axis_camera()
    depth = _depth(Sphere(np.array([0.0, 0.0, 5.0]), 1.0), camera)
    centre = SIZE // 2
    assert depth[centre, centre] == pytest.approx(4.0, abs=1e-5)
    # tangent rays make an angle asin(r / D) with the axis
    focal = camera.intrinsics[0, 0]
    edge = focal * np.tan(np.arcsin(1.0 / 5.0))
    offsets = np.arange(SIZE) + 0.5 - SIZE / 2
    assert np.array_equal(np.isfinite(depth[centre]), np.abs(offsets) <= edge)


def test_room_wall_facing_the_camera_is_at_constant_depth():
    room = Room(np.array([-10.0, -10.0, -1.0]), np.array([10.0, 10.0, 7.0]))
    depth = _depth(room)
    np.testing.assert_allclose(depth, 7.0, rtol=1e-6)  # z-depth of a fronto-parallel plane


def test_box_front_face_and_rotated_edge():
    centre = SIZE // 2
    square = Box(np.array([0.0, 0.0, 6.0]), np.ones(3), np.eye(3))
    assert _depth(square)[centre, centre] == pytest.approx(5.0, abs=1e-5)
    turned = Box(np.array([0.0, 0.0, 6.0]), np.ones(3), _yaw(np.pi / 4))
    assert _depth(turned)[centre, centre] == pytest.approx(6.0 - np.sqrt(2.0), abs=1e-5)


def test_cylinder_side_and_cap_on_axis():
    centre = SIZE // 2
    upright = Cylinder(np.array([0.0, -2.0, 5.0]), np.array([0.0, 2.0, 5.0]), 0.5)
    assert _depth(upright)[centre, centre] == pytest.approx(4.5, abs=1e-5)
    end_on = Cylinder(np.array([0.0, 0.0, 3.0]), np.array([0.0, 0.0, 8.0]), 0.5)
    assert _depth(end_on)[centre, centre] == pytest.approx(3.0, abs=1e-5)


def test_disc_tilted_about_its_centre_keeps_centre_depth():
    centre = SIZE // 2
    normal = np.array([0.3, -0.2, 1.0]) / np.linalg.norm([0.3, -0.2, 1.0])
    depth = _depth(Disc(np.array([0.0, 0.0, 2.0]), normal, 0.5))
    assert depth[centre, centre] == pytest.approx(2.0, abs=1e-5)
    assert np.isinf(depth[0, 0])


def test_heightfield_flat_and_ramp_facing_the_camera():
    centre = SIZE // 2
    corner, u = np.array([-2.0, -2.0, 6.0]), np.array([1.0, 0.0, 0.0])
    v = np.array([0.0, 1.0, 0.0])  # n = u × v = +z: it rises away; flip v to face the camera
    flat = Heightfield(corner + [0, 4, 0], u, -v, 4.0, 4.0, np.full((33, 33), 0.5, np.float32))
    assert _depth(flat)[centre, centre] == pytest.approx(5.5, abs=1e-4)
    ramp = 0.1 * np.linspace(0.0, 4.0, 65, dtype=np.float32)[None].repeat(65, axis=0)
    sloped = Heightfield(corner + [0, 4, 0], u, -v, 4.0, 4.0, ramp)
    assert _depth(sloped)[centre, centre] == pytest.approx(6.0 - 0.2, abs=1e-3)


@pytest.mark.parametrize("pixels", [1.5, 2.5, 3.5])
def test_thin_rod_renders_a_column_of_its_width(pixels):
    size, distance = 129, 4.0
    camera = _axis_camera(size=size)
    focal = camera.intrinsics[0, 0]
    radius = np.sin(np.arctan(pixels / 2 / focal)) * distance  # tangent rays `pixels` apart
    rod = Cylinder(np.array([0.013, -3.0, distance]), np.array([0.013, 3.0, distance]), radius)
    depth = _depth(rod, camera, size)
    widths = np.isfinite(depth).sum(axis=1)
    # the pixel centres inside an interval `pixels` long: floor or ceil of it, on every row
    assert set(widths.tolist()) <= {int(np.floor(pixels)), int(np.ceil(pixels))}
    assert np.nanmin(np.where(np.isfinite(depth), depth, np.nan)) > distance - radius - 1e-4


def test_generated_scenes_hold_rods_one_to_three_pixels_wide():
    found = []
    for seed in range(6):
        scene = render_scene(seed, 192, 256)
        for index, kind in enumerate(scene.kinds):
            rows, columns = np.nonzero(scene.labels == index)
            if kind != "rod" or rows.size < 20:
                continue
            points = np.stack([rows, columns], axis=1).astype(float)
            points -= points.mean(axis=0)
            axis = np.linalg.svd(points, full_matrices=False)[2][0]
            length = np.ptp(points @ axis) + 1
            found.append(rows.size / length)  # mean width across its length
    thin = [width for width in found if 0.7 <= width <= 3.5]
    assert len(thin) >= 3, found


def test_room_faces_are_planes_from_any_viewpoint():
    rng = np.random.default_rng(3)
    low, high = np.array([0.0, 0.0, 0.0]), np.array([6.0, 3.0, 9.0])
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    rotation = q * np.sign(np.linalg.det(q))
    camera = Camera.looking(96, 128, 80.0, rotation, np.array([2.0, 1.2, 3.0]))
    depth = render([Room(low, high)], camera, 96, 128)[0]
    points = camera.position[:, None, None] + camera.ray_directions(96, 128) * depth
    on_face = np.concatenate([np.abs(points - low[:, None, None]) < 1e-4,
                              np.abs(points - high[:, None, None]) < 1e-4])  # (6, H, W)
    assert on_face.any(axis=0).all()  # every hit lies on a face
    # inverse z-depth is affine in pixels on a plane: second differences vanish inside a face
    face = on_face.argmax(axis=0)
    inverse = 1.0 / depth.astype(np.float64)
    second = inverse[:, 2:] - 2 * inverse[:, 1:-1] + inverse[:, :-2]
    same = (face[:, 2:] == face[:, 1:-1]) & (face[:, 1:-1] == face[:, :-2])
    assert same.mean() > 0.8
    assert np.abs(second[same]).max() < 1e-5 * np.abs(inverse).max()


@pytest.mark.parametrize("seed", range(4))
def test_screen_culling_matches_testing_every_pixel(seed):
    rng = np.random.default_rng(seed)
    camera = Camera.looking(80, 120, 70.0, _yaw(rng.uniform(-0.3, 0.3)), np.zeros(3))
    shapes = [
        Sphere(rng.uniform([-2, -1, 2], [2, 1, 6]), rng.uniform(0.1, 0.8)),
        Box(rng.uniform([-2, -1, 2], [2, 1, 6]), rng.uniform(0.1, 0.6, 3), _yaw(rng.uniform(0, 3))),
        Cylinder(rng.uniform([-3, -2, 1], [3, 2, 8]), rng.uniform([-3, -2, 1], [3, 2, 8]),
                 rng.uniform(0.005, 0.3)),
        Disc(rng.uniform([-1, -1, 2], [1, 1, 4]), np.array([0.0, 0.0, 1.0]), 0.3),
    ]
    dirs = camera.ray_directions(80, 120)
    for shape in shapes:
        everywhere = shape.intersect(camera.position, dirs, np.full((80, 120), np.inf))
        np.testing.assert_array_equal(render([shape], camera, 80, 120)[0], everywhere)


def test_cylinder_matches_a_float64_quadratic():
    rng = np.random.default_rng(0)
    camera = Camera.looking(60, 80, 70.0, np.eye(3), np.zeros(3))
    dirs = camera.ray_directions(60, 80).astype(np.float64).reshape(3, -1).T
    for _ in range(5):
        start, end = rng.uniform([-2, -2, 2], [2, 2, 6], (2, 3))
        radius = rng.uniform(0.05, 0.5)
        depth = _depth_reference(start, end, radius, dirs).reshape(60, 80)
        rendered = render([Cylinder(start, end, radius)], camera, 60, 80)[0]
        agree = np.isfinite(depth) == np.isfinite(rendered)
        assert agree.mean() > 0.995  # at most a grazing pixel or two differs
        both = np.isfinite(depth) & np.isfinite(rendered)
        np.testing.assert_allclose(rendered[both], depth[both], rtol=1e-4)


def _depth_reference(start, end, radius, dirs):
    """Capped cylinder by the textbook quadratic in float64, rays from the origin."""
    axis = (end - start) / np.linalg.norm(end - start)
    oc = -start
    d_perp = dirs - np.outer(dirs @ axis, axis)
    oc_perp = oc - (oc @ axis) * axis
    a, b, c = (d_perp**2).sum(1), 2 * d_perp @ oc_perp, oc_perp @ oc_perp - radius**2
    disc = b * b - 4 * a * c
    with np.errstate(invalid="ignore", divide="ignore"):
        t = (-b - np.sqrt(disc)) / (2 * a)
        along = oc @ axis + t * (dirs @ axis)
        best = np.where((disc >= 0) & (along >= 0) & (along <= np.linalg.norm(end - start)),
                        t, np.inf)
        for point in (start, end):
            t_cap = ((point - np.zeros(3)) @ axis) / (dirs @ axis)
            hit = t_cap[:, None] * dirs - point
            inside = ((hit - np.outer(hit @ axis, axis)) ** 2).sum(1) <= radius**2
            best = np.minimum(best, np.where(inside & (t_cap > 0), t_cap, np.inf))
    return best


def test_heightfield_matches_dense_sampling_along_each_ray():
    rng = np.random.default_rng(4)
    bumps = np.cumsum(np.cumsum(rng.normal(size=(17, 17)), 0), 1).astype(np.float32)
    heights = 0.4 * (bumps - bumps.min()) / np.ptp(bumps)
    # a floor 1 m below the camera, seen obliquely: the camera looks down 30°
    pitch = np.radians(30)
    rotation = np.array([[1, 0, 0], [0, np.cos(pitch), np.sin(pitch)],
                         [0, -np.sin(pitch), np.cos(pitch)]])
    camera = Camera.looking(33, 33, 60.0, rotation, np.zeros(3))
    # world y down (OpenCV), floor at y = 1 rising towards -y: u = x, v = z, n = u × v = -y
    floor = Heightfield(np.array([-3.0, 1.0, -1.0]), np.array([1.0, 0, 0]),
                        np.array([0, 0, 1.0]), 6.0, 8.0, heights)
    depth = render([floor], camera, 33, 33)[0]
    dirs = camera.ray_directions(33, 33).astype(np.float64)
    t = np.linspace(1e-3, 20, 200_001)
    for row, column in [(16, 16), (30, 3), (25, 28), (20, 10)]:
        points = t[:, None] * dirs[:, row, column]  # from the origin
        x, z = (points[:, 0] + 3) / 6 * 16, (points[:, 2] + 1) / 8 * 16
        inside = (x >= 0) & (x <= 16) & (z >= 0) & (z <= 16)
        x0, z0 = np.clip(np.floor(x), 0, 15).astype(int), np.clip(np.floor(z), 0, 15).astype(int)
        fx, fz = x - x0, z - z0
        h = (heights[z0, x0] * (1 - fx) * (1 - fz) + heights[z0, x0 + 1] * fx * (1 - fz)
             + heights[z0 + 1, x0] * (1 - fx) * fz + heights[z0 + 1, x0 + 1] * fx * fz)
        below = inside & (1.0 - points[:, 1] <= h)
        assert below.any()
        assert depth[row, column] == pytest.approx(t[below.argmax()], abs=2e-3)
