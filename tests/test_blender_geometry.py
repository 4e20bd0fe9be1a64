"""The add-on's mesh geometry (blender_addon/geometry.py), pure numpy: no Blender needed."""

import math
import warnings

import numpy as np
import pytest

from blender_addon.geometry import (
    GeometryError,
    Intrinsics,
    distances,
    grid_mesh,
    grid_shape,
    plane_distance,
    relative,
    step_for_vertex_count,
    vertex_count,
)


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


def test_every_vertex_projects_back_onto_its_pixel_centre():
    k = Intrinsics.from_fov(32, 24, 70.0)
    z = step_scene()
    mesh = grid_mesh(z, k, step=3)
    np.testing.assert_allclose(reproject(mesh, k), mesh.pixels, atol=1e-4)
    u, v = mesh.pixels.T
    np.testing.assert_allclose(-mesh.positions[:, 2], z[v, u], rtol=1e-6)


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


def test_faces_face_the_camera():
    k = Intrinsics.from_fov(32, 24, 60.0)
    mesh = grid_mesh(np.full((24, 32), 5.0, np.float32), k)
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
    assert plane_distance(z) == pytest.approx(float(np.percentile(z, 99.9)))
    with pytest.raises(GeometryError, match="no usable value"):
        plane_distance(np.full((2, 2), np.nan))
