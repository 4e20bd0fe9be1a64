"""The add-on's mesh geometry (blender_addon/geometry.py), pure numpy: no Blender needed."""

import math
import warnings

import numpy as np
import pytest

from blender_addon.geometry import (
    FLYING_FRACTION,
    GeometryError,
    Intrinsics,
    distances,
    grid_mesh,
    grid_shape,
    plane_distance,
    plane_strength,
    relative,
    snap_ramps,
    step_for_vertex_count,
    vertex_count,
)
from blender_addon.robust_range import robust_range


def step_scene(height: int = 24, width: int = 32, near: float = 2.0, far: float = 6.0):
    """Distances with a vertical step edge: left half near, right half far, a gentle slope on
    each side (a real surface, which cutting must keep)."""
    z = np.full((height, width), far, dtype=np.float32)
    z[:, : width // 2] = near
    return z + np.linspace(0, 0.01, height, dtype=np.float32)[:, None]


def reproject(mesh, k: Intrinsics) -> np.ndarray:
    """Pixel coordinates (u, v) of the mesh vertices through the pinhole."""
    x, y, z = mesh.positions.T
    return np.stack([k.fx * x / -z + k.cx, -k.fy * y / -z + k.cy], axis=1)


def test_fov_gives_focal_length_in_pixels():
    k = Intrinsics.from_fov(640, 480, 90.0)
    assert k.fx == pytest.approx(320.0) and k.fy == k.fx
    assert (k.cx, k.cy) == (319.5, 239.5)
    assert k.fov_degrees == pytest.approx(90.0)


def test_lens_and_sensor_match_blenders_horizontal_fit():
    # blender.md §3.2: with a 36 mm sensor, lens = 18/tan(hfov/2), so 60° ↔ 31.177 mm.
    k = Intrinsics.from_lens(800, 600, 18 / math.tan(math.radians(30)), 36.0)
    assert k.fov_degrees == pytest.approx(60.0)
    assert k.fx == pytest.approx(Intrinsics.from_fov(800, 600, 60.0).fx)


@pytest.mark.parametrize("width, height, step", [(32, 24, 1), (33, 25, 2), (1000, 1, 3)])
def test_grid_keeps_every_step_th_pixel_from_the_first(width, height, step):
    if height < 2:
        with pytest.raises(GeometryError, match="at least 2×2"):
            grid_shape(width, height, step)
        return
    rows, columns = grid_shape(width, height, step)
    assert rows == len(range(0, height, step)) and columns == len(range(0, width, step))
    assert vertex_count(width, height, step) == rows * columns


@pytest.mark.parametrize("target", [4, 1000, 10_000, 1_000_000])
def test_target_vertex_count_picks_the_finest_step_within_it(target):
    step = step_for_vertex_count(1920, 1080, target)
    assert vertex_count(1920, 1080, step) <= target
    assert step == 1 or vertex_count(1920, 1080, step - 1) > target


@pytest.mark.parametrize("close_gaps", [False, True])
def test_every_vertex_projects_back_onto_its_pixel_centre(close_gaps):
    k = Intrinsics.from_fov(32, 24, 70.0)
    z = step_scene()
    mesh = grid_mesh(z, k, step=3, cut_ratio=0.05, close_gaps=close_gaps)
    np.testing.assert_allclose(reproject(mesh, k), mesh.pixels, atol=1e-4)
    u, v = mesh.pixels[:mesh.grid_vertices].astype(int).T
    np.testing.assert_array_equal(mesh.pixels[:mesh.grid_vertices], np.stack([u, v], 1))
    np.testing.assert_allclose(-mesh.positions[:mesh.grid_vertices, 2], z[v, u], rtol=1e-6)
    assert (mesh.grid_vertices < len(mesh.positions)) == close_gaps


def test_off_centre_principal_point_is_respected():
    k = Intrinsics(32, 24, 40.0, 44.0, 10.0, 15.0)
    mesh = grid_mesh(step_scene(), k)
    np.testing.assert_allclose(reproject(mesh, k), mesh.pixels, atol=1e-4)


def test_uvs_are_pixel_centres_of_each_corner():
    k = Intrinsics.from_fov(32, 24, 60.0)
    mesh = grid_mesh(step_scene(), k, step=2)
    u, v = mesh.pixels[mesh.corner_verts].T
    np.testing.assert_allclose(mesh.uvs[:, 0], (u + 0.5) / 32, atol=1e-7)
    np.testing.assert_allclose(mesh.uvs[:, 1], 1 - (v + 0.5) / 24, atol=1e-7)
    assert mesh.uvs.min() > 0 and mesh.uvs.max() < 1


@pytest.mark.parametrize("close_gaps", [False, True])
def test_faces_face_the_camera(close_gaps):
    k = Intrinsics.from_fov(32, 24, 60.0)
    z = step_scene() if close_gaps else np.full((24, 32), 5.0, np.float32)
    mesh = grid_mesh(z, k, cut_ratio=0.05, close_gaps=close_gaps)
    corners = mesh.positions[mesh.corner_verts.reshape(-1, 4)]  # [F, 4, 3]
    normals = np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])
    towards_camera = -corners.mean(axis=1)
    assert (np.einsum("fi,fi->f", normals, towards_camera) > 0).all()


def test_full_grid_without_cutting_has_all_quads_and_vertices():
    mesh = grid_mesh(step_scene(), Intrinsics.from_fov(32, 24, 60.0), step=1)
    assert len(mesh.positions) == 32 * 24 and mesh.face_count == 31 * 23 and mesh.cut == 0


def _bridging(mesh) -> int:
    """Quads with corners on both sides of step_scene's edge."""
    near = (-mesh.positions[:, 2] < 4.0)[mesh.corner_verts.reshape(-1, 4)]
    return int(np.count_nonzero(near.any(axis=1) & ~near.all(axis=1)))


@pytest.mark.parametrize("step", [1, 2, 3])
def test_cutting_removes_exactly_the_quads_across_the_step(step):
    k, z = Intrinsics.from_fov(32, 24, 60.0), step_scene()
    rows, columns = grid_shape(32, 24, step)
    kept = grid_mesh(z, k, step=step)
    cut = grid_mesh(z, k, step=step, cut_ratio=0.05)
    assert _bridging(kept) == rows - 1  # one column of quads straddles the edge
    assert _bridging(cut) == 0 and cut.cut == rows - 1
    assert cut.face_count == kept.face_count - (rows - 1) == (rows - 1) * (columns - 2)
    assert len(cut.positions) == rows * columns  # both sides keep their edge vertices


def test_cut_ratio_is_scale_invariant_and_keeps_slopes():
    k, z = Intrinsics.from_fov(32, 24, 60.0), step_scene()
    in_metres = grid_mesh(z, k, cut_ratio=0.05)
    in_millimetres = grid_mesh(z * 1000, k, cut_ratio=0.05)
    np.testing.assert_array_equal(in_metres.corner_verts, in_millimetres.corner_verts)
    slope = np.linspace(2.0, 3.0, 32, dtype=np.float32)[None].repeat(24, 0)
    assert grid_mesh(slope, k, cut_ratio=0.05).cut == 0


def test_pixels_without_depth_drop_their_quads_and_vertices():
    z = step_scene()
    z[5, 7] = np.nan
    z[10, 20] = 0.0
    mesh = grid_mesh(z, Intrinsics.from_fov(32, 24, 60.0))
    assert mesh.face_count == 31 * 23 - 8  # four quads around each hole
    assert len(mesh.positions) == 32 * 24 - 2
    assert np.isfinite(mesh.positions).all()
    assert mesh.corner_verts.max() == len(mesh.positions) - 1


def test_distances_of_each_kind():
    d = np.array([[1.0, 2.0], [3.0, 4.0]], dtype=np.float32)
    np.testing.assert_allclose(distances(d, "DEPTH", scale=2.0), 2 * d)
    lin = distances(d, "RELATIVE_DEPTH", near=1.0, far=9.0)
    assert lin.min() == pytest.approx(1.0) and lin.max() == pytest.approx(9.0)
    assert (np.diff(lin.ravel()) > 0).all()  # farther as the value grows
    inv = distances(d, "DISPARITY", near=1.0, far=9.0)
    assert inv.max() == pytest.approx(9.0) and inv.min() == pytest.approx(1.0)
    assert (np.diff(inv.ravel()) < 0).all()  # nearer as the disparity grows
    np.testing.assert_allclose(1 / inv, 1 / 9 + relative(d) * (1 - 1 / 9), rtol=1e-6)


def test_non_positive_and_nan_depth_become_nan():
    d = np.array([[np.nan, -1.0], [0.0, 4.0]], dtype=np.float32)
    z = distances(d, "DEPTH")
    assert np.isnan(z[[0, 0, 1], [0, 1, 0]]).all() and z[1, 1] == 4.0


@pytest.mark.parametrize("depth, kind, message", [
    (np.full((4, 4), np.nan), "DEPTH", "no finite value"),
    (np.full((4, 4), 3.0), "DISPARITY", "constant"),
    (np.ones((4, 4, 3)), "DEPTH", "2-D"),
    (np.array([["a"]]), "DEPTH", "numbers"),
    (np.eye(4), "METRES", "not one of"),
])
def test_unusable_depth_is_refused_naming_the_problem(depth, kind, message):
    with pytest.raises(GeometryError, match=message):
        distances(depth, kind)


@pytest.mark.parametrize("kind, settings, message", [
    ("DEPTH", {"scale": math.inf}, r"depth scale: inf must be a positive finite"),
    ("DEPTH", {"scale": 1e39}, r"depth scale 1e\+39: gives distances up to .* beyond the "
                               "largest a mesh can hold"),
    ("DEPTH", {"scale": 1e-50}, r"depth scale 1e-50: .* below the smallest"),
    ("RELATIVE_DEPTH", {"far": math.inf}, r"far inf: need 0 < near < far, both finite"),
    ("DISPARITY", {"far": math.inf}, r"far inf: need 0 < near < far, both finite"),
    ("DISPARITY", {"near": 1e-300, "far": 1e300}, r"far 1e\+300: .* beyond the largest"),
    ("RELATIVE_DEPTH", {"near": 1e-300, "far": 1e300}, r"far 1e\+300: .* beyond the largest"),
    ("DISPARITY", {"near": 1e-300, "far": 1.0}, r"near 1e-300: .* below the smallest"),
    ("DISPARITY", {"near": 1e-320, "far": 1.0}, r"near .*e-32\d: .* below the smallest"),
])
def test_settings_whose_distances_a_mesh_cannot_hold_are_refused(kind, settings, message):
    """These once returned inf or NaN distances (or 0, a vertex dropped as having no depth)."""
    depth = np.random.default_rng(0).uniform(0.5, 4.0, (8, 8))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no overflow warning on the way to the refusal
        with pytest.raises(GeometryError, match=message):
            distances(depth, kind, **settings)


def test_distances_near_float32_limits_stay_finite_and_ordered():
    extreme = np.array([[-3e38, -1e38], [1e38, 3e38]], dtype=np.float32)
    t = relative(extreme)
    assert np.isfinite(t).all() and (np.diff(t.ravel()) > 0).all()
    z = distances(np.array([[1.0, 2.0], [3.0, 4.0]]), "DISPARITY", near=1e-30, far=1e38)
    assert np.isfinite(z).all()
    assert z.min() == pytest.approx(1e-30, rel=1e-6) and z.max() == pytest.approx(1e38, rel=1e-6)


@pytest.mark.parametrize("step", [1.5, 2.0, math.nan, True, 0, -3])
def test_a_step_that_is_not_a_whole_number_of_pixels_is_refused(step):
    """1.5 and NaN once ended in numpy's TypeError and ValueError."""
    k = Intrinsics.from_fov(32, 24, 60.0)
    with pytest.raises(GeometryError, match="step: .* must be a whole number of pixels"):
        grid_mesh(np.ones((24, 32), np.float32), k, step=step)


def test_bad_settings_are_refused():
    with pytest.raises(GeometryError, match="near"):
        distances(np.eye(4), "DISPARITY", near=5.0, far=1.0)
    with pytest.raises(GeometryError, match="scale"):
        distances(np.eye(4), "DEPTH", scale=0.0)
    with pytest.raises(GeometryError, match="fov"):
        Intrinsics.from_fov(10, 10, 180.0)
    k = Intrinsics.from_fov(32, 24, 60.0)
    with pytest.raises(GeometryError, match="24×32 but the camera is for 32×24"):
        grid_mesh(np.ones((32, 24), np.float32), k)
    with pytest.raises(GeometryError, match="no quad fits"):
        grid_mesh(np.ones((24, 32), np.float32), k, step=40)
    with pytest.raises(GeometryError, match="cut ratio"):
        grid_mesh(np.ones((24, 32), np.float32), k, cut_ratio=0.0)
    with pytest.raises(GeometryError, match="4 a quad needs"):
        step_for_vertex_count(32, 24, 3)


def test_plane_stands_at_the_far_end_of_the_scene():
    z = step_scene()
    assert plane_distance(z) == robust_range(z)[1]  # sddr's rule, not np.percentile's
    with pytest.raises(GeometryError, match="no usable value"):
        plane_distance(np.full((2, 2), np.nan))


def test_the_default_plane_strength_brings_the_nearest_part_a_quarter_of_the_way():
    z = step_scene(near=2.0, far=6.0)
    strength, (nearest, plane) = plane_strength(z), robust_range(z)
    assert plane - strength * (plane - nearest) == pytest.approx(0.75 * plane)
    assert plane_strength(step_scene(near=5.0, far=6.0)) == 1.0  # a shallow relief stays true


# --------------------------------------------------------------- ramps, closing the cuts

def ramp_scene(height: int = 24, width: int = 48, near: float = 2.0, far: float = 6.0,
               ramp: int = 10) -> np.ndarray:
    """step_scene's edge spread over `ramp` pixels, linearly in disparity (as a network blurs
    it), with the same gentle slope on both sides."""
    x = np.arange(width, dtype=np.float32)
    t = np.clip((x - (width / 2 - ramp / 2)) / ramp, 0, 1)  # 0 near … 1 far
    disparity = 1 / near + t * (1 / far - 1 / near)
    return (1 / disparity)[None].repeat(height, 0) + np.linspace(0, 0.01, height,
                                                                  dtype=np.float32)[:, None]


def floating(z: np.ndarray, near: np.ndarray, far: np.ndarray) -> np.ndarray:
    """The flying-pixel rule: more than FLYING_FRACTION of the step from both sides."""
    margin = FLYING_FRACTION * (far - near)
    return (z > near + margin) & (z < far - margin)


def test_ramp_pixels_go_to_the_side_they_are_nearer_to():
    z = ramp_scene()
    snapped = snap_ramps(z, 0.05)
    near, far = z[:, :1], z[:, -1:]
    assert floating(z, near, far).sum() >= 24 * 6  # the ramp floats before
    assert not floating(snapped, near, far).any()
    moved = snapped != z
    nearer = np.log(z) - np.log(near) < np.log(far) - np.log(z)
    np.testing.assert_allclose(snapped[moved & nearer], np.broadcast_to(near, z.shape)[
        moved & nearer], rtol=0.02)
    np.testing.assert_allclose(snapped[moved & ~nearer], np.broadcast_to(far, z.shape)[
        moved & ~nearer], rtol=0.02)
    # one clean step per row: the depth rises once, by the whole step
    rises = np.diff(np.log(snapped), axis=1) > np.log(1.05)
    assert (rises.sum(axis=1) == 1).all()


def test_snapping_keeps_slopes_small_steps_plateaus_and_holes():
    slope = np.geomspace(2.0, 8.0, 64, dtype=np.float32)[None].repeat(16, 0)  # 2.2 %/px
    np.testing.assert_array_equal(snap_ramps(slope, 0.05), slope)
    small = ramp_scene(near=2.0, far=2.08, ramp=4)  # a 4 % step: no cut would remove it
    np.testing.assert_array_equal(snap_ramps(small, 0.05), small)
    z = ramp_scene()
    z[3, 20:26] = np.nan
    snapped = snap_ramps(z, 0.05)
    assert np.isnan(snapped[3, 20:26]).all() and np.isfinite(np.delete(snapped, 3, 0)).all()
    sides = np.abs(np.log(snapped) - np.log(z)) < 1e-6
    assert sides[:, :15].all() and sides[:, -15:].all()  # plateaus untouched


def test_a_step_spread_gently_is_snapped_too():
    """A 22 % step spread over 12 px changes by at most 2.1 % a pixel, less than the cut ratio,
    yet meshed as is it is a sheet: every pixel ends on one side, or within snapping's margin
    of it (min(half the cut ratio, FLYING_FRACTION of the step), in log depth)."""
    gentle = ramp_scene(near=2.0, far=2.45, ramp=12)
    assert np.abs(np.diff(np.log(gentle), axis=1)).max() < math.log(1.05)
    near, far = np.log(gentle[:, :1]), np.log(gentle[:, -1:])  # the plateaus
    margin = min(math.log(1.05) / 2, FLYING_FRACTION * float((far - near).min()))
    assert floating(gentle, np.exp(near), np.exp(far)).sum(1).min() >= 10
    log_z = np.log(snap_ramps(gentle, 0.05))
    assert (np.minimum(log_z - near, far - log_z) <= margin + 1e-6).all()


def test_snapping_is_scale_invariant():
    z = ramp_scene()
    np.testing.assert_allclose(snap_ramps(z * 1000, 0.05), snap_ramps(z, 0.05) * 1000,
                               rtol=1e-5)


def test_a_blurred_pole_becomes_a_pole_and_a_middle_plateau_stays():
    """A pole blurred into a bump stands at its peak's depth with clean flanks; a box between
    it and the wall is not pulled to either (three depths in one window)."""
    x = np.arange(64, dtype=np.float32)
    bump = 1 / 6.0 + (1 / 2.0 - 1 / 6.0) * np.exp(-0.5 * ((x - 20) / 2.5) ** 2)
    z = (1 / bump)[None].repeat(8, 0)
    z[:, 34:] = 4.0  # a box, its edge 14 px from the pole
    snapped = snap_ramps(z, 0.05)
    near, far = snapped[:, 20:21], np.full_like(z, 6.0)
    pole = snapped < near * 1.1  # the walk ends where the bump flattens: 2.0 or 2.11
    wall = snapped > 6.0 / 1.05
    assert (pole | wall)[:, :34].all() and pole[:, 18:23].all() and wall[:, :8].all()
    assert not floating(snapped[:, :34], near, far[:, :34]).any()
    np.testing.assert_array_equal(snapped[:, 34:], 4.0)


def test_bad_snapping_settings_are_refused():
    with pytest.raises(GeometryError, match="cut ratio"):
        snap_ramps(ramp_scene(), 0.0)
    with pytest.raises(GeometryError, match="ramp reach"):
        snap_ramps(ramp_scene(), 0.05, reach=0)


def coverage(mesh, k: Intrinsics, points: np.ndarray) -> np.ndarray:
    """Which image `points` [P, 2] some face of `mesh` covers, seen from the camera (each face
    projected, split into two triangles)."""
    image = reproject(mesh, k)[mesh.corner_verts.reshape(-1, 4)]  # [F, 4, 2]
    covered = np.zeros(len(points), dtype=bool)
    for a, b, c in ((0, 1, 2), (0, 2, 3)):
        tri = image[:, [a, b, c]]  # [F, 3, 2]
        inside = np.ones((len(tri), len(points)), dtype=bool)
        for i in range(3):
            p, q = tri[:, i, None], tri[:, (i + 1) % 3, None]  # [F, 1, 2]
            cross = ((q[..., 0] - p[..., 0]) * (points[None, :, 1] - p[..., 1])
                     - (q[..., 1] - p[..., 1]) * (points[None, :, 0] - p[..., 0]))
            area = ((tri[:, 1, 0] - tri[:, 0, 0]) * (tri[:, 2, 1] - tri[:, 0, 1])
                    - (tri[:, 1, 1] - tri[:, 0, 1]) * (tri[:, 2, 0] - tri[:, 0, 0]))[:, None]
            inside &= cross * np.sign(area) >= -1e-6
        covered |= inside.any(axis=0)
    return covered


def image_points(width: int, height: int) -> np.ndarray:
    """Points every quarter pixel across the whole image, its outer half pixels included."""
    u, v = np.meshgrid(np.arange(-0.375, width - 0.5, 0.25), np.arange(-0.375, height - 0.5, 0.25))
    return np.stack([u.ravel(), v.ravel()], axis=1)


@pytest.mark.parametrize("step", [1, 2])
def test_closed_cuts_leave_no_gap_from_the_camera_and_no_sheet(step):
    k, z = Intrinsics.from_fov(32, 24, 60.0), step_scene()
    points = image_points(32, 24)
    cut = grid_mesh(z, k, step=step, cut_ratio=0.05)
    closed = grid_mesh(z, k, step=step, cut_ratio=0.05, close_gaps=True)
    assert not coverage(cut, k, points).all()  # the strip along the cut and the border
    assert coverage(closed, k, points).all()
    corners = -closed.positions[closed.corner_verts.reshape(-1, 4), 2]
    assert (corners.max(axis=1) <= corners.min(axis=1) * 1.05).all()  # no face bridges
    assert closed.cut == cut.cut == grid_shape(32, 24, step)[0] - 1


def test_without_cutting_closing_covers_the_border_only():
    k, z = Intrinsics.from_fov(32, 24, 60.0), step_scene()
    mesh = grid_mesh(z, k, step=2, close_gaps=True)
    rectangles = 2 * (16 + 12)  # one per outer vertex of the 16 × 12 grid
    assert mesh.face_count == 15 * 11 + rectangles and mesh.cut == 0
    assert len(mesh.positions) == mesh.grid_vertices + 4 * rectangles
    assert coverage(mesh, k, image_points(32, 24)).all()


def test_the_background_goes_on_behind_the_foregrounds_edge():
    k, z = Intrinsics.from_fov(32, 24, 60.0), step_scene()
    mesh = grid_mesh(z, k, cut_ratio=0.05, close_gaps=True)
    edge = mesh.pixels[:, 0] == 15  # the near side's last column
    depth = -mesh.positions[:, 2]
    behind = edge & (depth > 4.0)
    assert behind.sum() == 24  # a copy of the far side behind each edge pixel
    np.testing.assert_allclose(depth[behind], z[:, 16], rtol=1e-5)
    # and the near side covers its own pixels to their edge, halfway to the far side
    near_faces = (depth[mesh.corner_verts.reshape(-1, 4)] < 4.0).all(axis=1)
    reach = mesh.pixels[mesh.corner_verts.reshape(-1, 4)[near_faces], 0].max()
    assert reach == 15.5


def test_a_one_pixel_pole_keeps_its_width():
    k = Intrinsics.from_fov(32, 24, 60.0)
    z = np.full((24, 32), 6.0, np.float32)
    z[:, 10] = 2.0
    mesh = grid_mesh(z, k, cut_ratio=0.05, close_gaps=True)
    quads = mesh.corner_verts.reshape(-1, 4)
    pole = (-mesh.positions[quads, 2] < 4.0).all(axis=1)
    pole_mesh = type(mesh)(mesh.positions, mesh.pixels, quads[pole].ravel(), mesh.uvs[:0], 0,
                           mesh.grid_vertices)
    across = np.stack([np.arange(8.0, 12.0, 0.25) + 0.125, np.full(16, 12.0)], axis=1)
    assert coverage(pole_mesh, k, across).tolist() == [9.5 < u < 10.5 for u in across[:, 0]]


def test_closing_colours_come_from_the_side_each_face_shows():
    k, z = Intrinsics.from_fov(32, 24, 60.0), step_scene()
    mesh = grid_mesh(z, k, cut_ratio=0.05, close_gaps=True)
    image_u, image_v = mesh.uvs[:, 0] * 32 - 0.5, (1 - mesh.uvs[:, 1]) * 24 - 0.5
    depth = -mesh.positions[mesh.corner_verts, 2]
    inside = (image_v > 0) & (image_v < 23)  # not the border's faces
    assert (image_u[inside & (depth > 4.0)] >= 16 - 1e-4).all()  # background: far side
    assert (image_u[inside & (depth < 4.0)] <= 15.5 + 1e-4).all()  # foreground: its pixels
    assert mesh.uvs.min() >= 0 and mesh.uvs.max() <= 1
