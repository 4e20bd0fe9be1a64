"""The Blender extension in the real `bpy` wheel (5.0.1, and 4.2 LTS as a smoke run).

bpy is Python 3.11 only and must never share a process with torch, so these tests run in their
own venv and pytest process, without tests/conftest.py (which imports torch):

    python3.11 -m venv .venv-bpy && .venv-bpy/bin/pip install bpy==5.0.1 pytest
    .venv-bpy/bin/python -m pytest -q -p no:cacheprovider --noconftest tests/test_blender_addon.py

In any other Python they skip, saying so. The zip is built with Blender's own extension builder
(shipped inside the wheel) and installed as a user would; the refinement runs in the project's
`.venv` (or $SDDR_PYTHON) with the tiny models of tests/test_blender_backend.py.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import re
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

if importlib.util.find_spec("bpy"):  # before bpy loads: keep installs out of ~/.config/blender
    os.environ.setdefault("BLENDER_USER_RESOURCES", tempfile.mkdtemp(prefix="sddr-blender-"))
bpy = pytest.importorskip("bpy", reason="bpy (the Blender wheel, Python 3.11 only) is not "
                                        "installed in this Python; see this file's docstring")
from bpy_extras.object_utils import world_to_camera_view  # noqa: E402  (needs bpy first)

from benchmarks import mesh_edges  # noqa: E402
from benchmarks.mesh_edges import see_through  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
MODULE = "bl_ext.user_default.sddr_depth"
WIDTH, HEIGHT, NEAR, FAR = 32, 24, 2.0, 6.0


@pytest.fixture(scope="session")
def addon(tmp_path_factory) -> str:
    """Build the zip with Blender's extension builder and install and enable it."""
    builder = (Path(bpy.utils.system_resource("SCRIPTS")) / "addons_core" / "bl_pkg" / "cli"
               / "blender_ext.py")
    dist = tmp_path_factory.mktemp("dist")
    subprocess.run([sys.executable, str(builder), "build", "--source-dir",
                    str(ROOT / "blender_addon"), "--output-dir", str(dist)], check=True)
    (package,) = dist.glob("sddr_depth-*.zip")
    bpy.ops.extensions.package_install_files(filepath=str(package), repo="user_default",
                                             enable_on_install=True)
    assert MODULE in bpy.context.preferences.addons
    yield MODULE
    bpy.ops.preferences.addon_disable(module=MODULE)


@pytest.fixture(autouse=True)
def scene(addon):
    """An empty scene per test, with an undo step to return to."""
    bpy.ops.wm.read_homefile(use_empty=True)
    bpy.ops.ed.undo_push(message="empty scene")
    return bpy.context.scene


def save_image(path: Path, values: np.ndarray, *, depth: bool) -> Path:
    """Write H×W (depth, 32-bit EXR) or H×W×3 (photo, 8-bit PNG) through Blender itself."""
    height, width = values.shape[:2]
    image = bpy.data.images.new(path.stem, width, height, float_buffer=depth, alpha=False)
    if depth:  # before the pixels: changing the colourspace afterwards drops them
        image.colorspace_settings.name = "Non-Color"
    rgba = np.ones((height, width, 4), np.float32)
    rgba[..., :3] = values[..., None] if depth else values
    image.pixels.foreach_set(rgba[::-1].ravel())
    image.filepath_raw = str(path)
    image.file_format = "OPEN_EXR" if depth else "PNG"
    image.save()
    bpy.data.images.remove(image)
    return path


def step_depth() -> np.ndarray:
    """Metric depth with a vertical step edge: left half at NEAR, right half at FAR."""
    z = np.full((HEIGHT, WIDTH), FAR, np.float32)
    z[:, : WIDTH // 2] = NEAR
    return z + np.linspace(0, 0.01, HEIGHT, dtype=np.float32)[:, None]


@pytest.fixture
def files(tmp_path) -> dict[str, Path]:
    rng = np.random.default_rng(0)
    return {"depth": save_image(tmp_path / "step.exr", step_depth(), depth=True),
            "photo": save_image(tmp_path / "photo.png", rng.uniform(0, 1, (HEIGHT, WIDTH, 3)),
                                depth=False)}


def use(scene, files, **settings):
    scene.sddr.depth_path, scene.sddr.image_path = str(files["depth"]), str(files["photo"])
    scene.sddr.depth_kind, scene.sddr.fov = "DEPTH", 60.0
    if "step" in settings:  # the default density is a vertex count
        settings.setdefault("density", "STEP")
    for name, value in settings.items():
        setattr(scene.sddr, name, value)


def camera_distances(obj) -> np.ndarray:
    """Each vertex's distance along the view axis (mesh space is camera space)."""
    return np.array([-v.co.z for v in obj.data.vertices])


def bridging_faces(obj) -> int:
    near = camera_distances(obj) < (NEAR + FAR) / 2
    return sum(len({near[i] for i in p.vertices}) == 2 for p in obj.data.polygons)


def data_counts() -> dict[str, int]:
    return {name: len(getattr(bpy.data, name))
            for name in ("objects", "meshes", "materials", "images", "textures", "cameras")}


# ------------------------------------------------------------------------------- install

def test_extension_registers_operators_settings_panel_and_preferences(addon, scene):
    for name in ("estimate_and_refine", "build_mesh", "build_displaced_plane", "add_camera",
                 "export_gltf", "check_backend", "build_animated_mesh", "refine_frames"):
        assert hasattr(bpy.ops.sddr, name), name
    for name in ("image_path", "depth_path", "step", "cut_edges", "cut_ratio", "fov"):
        assert hasattr(scene.sddr, name), name
    assert bpy.types.SDDR_PT_main.bl_category == "SDDR"
    prefs = bpy.context.preferences.addons[addon].preferences
    assert (prefs.python, prefs.device, prefs.weights) == ("", "auto", "default")
    assert "torch" not in sys.modules  # and the add-on never brought it in


# ---------------------------------------------------------------------------------- mesh

@pytest.mark.parametrize("step", [1, 2, 3])
def test_vertex_count_follows_the_pixel_step(scene, files, step):
    use(scene, files, step=step, cut_edges=False, close_gaps=False)
    assert bpy.ops.sddr.build_mesh() == {"FINISHED"}
    mesh = bpy.context.active_object.data
    rows, columns = len(range(0, HEIGHT, step)), len(range(0, WIDTH, step))
    assert len(mesh.vertices) == rows * columns
    assert len(mesh.polygons) == (rows - 1) * (columns - 1)


def test_target_vertex_count_is_not_exceeded(scene, files):
    assert (scene.sddr.density, scene.sddr.target_vertices) == ("TARGET", 1_000_000)  # default
    use(scene, files, target_vertices=200, cut_edges=False, close_gaps=False)
    bpy.ops.sddr.build_mesh()
    count = len(bpy.context.active_object.data.vertices)
    assert 200 / 4 < count <= 200  # the finest step within the target, so not far below it


def test_cutting_removes_every_face_across_the_step_and_only_those(scene, files):
    use(scene, files, cut_edges=False, close_gaps=False)
    bpy.ops.sddr.build_mesh()
    uncut = bpy.context.active_object
    assert bridging_faces(uncut) == HEIGHT - 1
    use(scene, files, cut_edges=True, cut_ratio=0.05)
    bpy.ops.sddr.build_mesh()
    cut = bpy.context.active_object
    assert cut != uncut and bridging_faces(cut) == 0
    assert len(cut.data.polygons) == len(uncut.data.polygons) - (HEIGHT - 1)


def test_by_default_the_cut_is_closed_so_the_camera_sees_no_gap(scene, files):
    use(scene, files, close_gaps=False)
    bpy.ops.sddr.build_mesh()
    bpy.ops.sddr.add_camera()
    bpy.context.view_layer.update()
    rows = np.arange(HEIGHT, dtype=float)
    gaps = np.concatenate([  # the cut's strip between pixel centres, the border's outer half
        np.stack([np.full(HEIGHT, WIDTH / 2 - 0.5), rows], 1),
        np.stack([np.arange(WIDTH, dtype=float), np.full(WIDTH, -0.25)], 1)])
    assert see_through(bpy.context.active_object, scene.camera, gaps).all()
    use(scene, files, close_gaps=True)
    assert (scene.sddr.cut_edges, scene.sddr.snap_ramps) == (True, True)  # the defaults
    bpy.ops.sddr.build_mesh()
    obj = bpy.context.active_object
    bpy.ops.sddr.add_camera()
    bpy.context.view_layer.update()
    assert not see_through(obj, scene.camera).any() and not see_through(obj, scene.camera,
                                                                         gaps).any()
    assert bridging_faces(obj) == 0  # closed with background and foreground, no sheet
    behind = camera_distances(obj) > (NEAR + FAR) / 2
    assert behind.sum() > (WIDTH // 2) * HEIGHT  # the background goes on behind the edge


def test_redo_settings_override_the_scene(scene, files):
    use(scene, files, step=1)
    bpy.ops.sddr.build_mesh(density="STEP", step=4, cut_edges=False, close_gaps=False)
    assert len(bpy.context.active_object.data.vertices) == 6 * 8
    assert scene.sddr.step == 1  # the sidebar's value is untouched
    # the next call starts from the sidebar again, not from this call's remembered values
    operator = bpy.ops.sddr.build_mesh.get_rna_type().properties
    assert operator["step"].is_skip_save and operator["cut_ratio"].is_skip_save
    assert not scene.sddr.bl_rna.properties["step"].is_skip_save


def test_every_vertex_projects_onto_its_pixel_centre_through_the_added_camera(scene, files):
    use(scene, files, step=3, cut_edges=True, close_gaps=False)
    bpy.ops.sddr.build_mesh()
    obj = bpy.context.active_object
    assert bpy.ops.sddr.add_camera() == {"FINISHED"}
    camera = scene.camera
    assert (scene.render.resolution_x, scene.render.resolution_y) == (WIDTH, HEIGHT)
    assert camera.data.lens == pytest.approx(18 / math.tan(math.radians(30)), rel=1e-6)
    bpy.context.view_layer.update()
    mesh = obj.data
    uv = np.empty(len(mesh.loops) * 2, np.float32)
    mesh.attributes["UVMap"].data.foreach_get("vector", uv)
    corner = np.empty(len(mesh.loops), np.int32)
    mesh.attributes[".corner_vert"].data.foreach_get("value", corner)
    pixel_of = {}
    for vertex, (u, v) in zip(corner, uv.reshape(-1, 2), strict=True):
        pixel_of[vertex] = (u * WIDTH - 0.5, (1 - v) * HEIGHT - 0.5)
    errors = []
    for index, vertex in enumerate(mesh.vertices):
        ndc = world_to_camera_view(scene, camera, obj.matrix_world @ vertex.co)
        u, v = ndc.x * WIDTH - 0.5, (1 - ndc.y) * HEIGHT - 0.5
        errors.append(max(abs(u - pixel_of[index][0]), abs(v - pixel_of[index][1])))
        assert ndc.z == pytest.approx(-vertex.co.z, rel=1e-5)  # its depth, in front
    assert len(errors) == len(range(0, HEIGHT, 3)) * len(range(0, WIDTH, 3))
    assert max(errors) < 1e-3
    assert all(abs(c - round(c)) < 1e-4 for p in pixel_of.values() for c in p)


def test_undo_removes_the_mesh_and_restores_the_scene(scene, files):
    use(scene, files)
    bpy.ops.ed.undo_push(message="settings")
    before = data_counts()
    assert bpy.ops.sddr.build_mesh("EXEC_DEFAULT", True) == {"FINISHED"}
    assert data_counts()["objects"] == before["objects"] + 1
    bpy.ops.ed.undo()
    assert data_counts() == before
    assert bpy.context.scene.sddr.depth_path == str(files["depth"])


def test_a_depth_file_alone_builds_an_untextured_mesh(scene, files):
    use(scene, files, image_path="")
    bpy.ops.sddr.build_mesh()
    assert len(bpy.context.active_object.data.materials) == 0


def write_png16(path: Path, values: np.ndarray) -> Path:
    """A 16-bit grey PNG, as `sddr refine` writes depth (written by hand: no imaging library
    in the bpy venv)."""
    height, width = values.shape
    rows = np.zeros((height, 1 + 2 * width), np.uint8)  # filter byte 0, then big-endian pixels
    rows[:, 1:] = values.astype(">u2").view(np.uint8).reshape(height, -1)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (len(data).to_bytes(4, "big") + kind + data
                + zlib.crc32(kind + data).to_bytes(4, "big"))

    header = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([16, 0, 0, 0, 0])
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
                     + chunk(b"IDAT", zlib.compress(rows.tobytes())) + chunk(b"IEND", b""))
    return path


def test_16_bit_png_depth_reads_as_float_non_color(scene, tmp_path, files):
    levels = np.tile(np.linspace(1000, 60000, WIDTH).astype(np.uint16), (HEIGHT, 1))
    use(scene, files, depth_path=str(write_png16(tmp_path / "ramp.png", levels)),
        cut_edges=False)
    bpy.ops.sddr.build_mesh()
    z = np.unique(camera_distances(bpy.context.active_object).round(5))
    np.testing.assert_allclose(z, np.unique(levels), rtol=1e-6)  # codes, as sddr reads them


def test_displaced_plane_is_a_live_modifier_driven_by_the_depth(scene, files):
    use(scene, files)
    assert bpy.ops.sddr.build_displaced_plane(strength=0.5, subdivisions=16) == {"FINISHED"}
    obj = bpy.context.active_object
    displace = obj.modifiers["SDDR Displace"]
    assert (displace.mid_level, displace.texture_coords, displace.strength) == (0.0, "UV", 0.5)
    image = displace.texture.image
    assert image.colorspace_settings.name == "Non-Color" and image.is_float
    assert max(len(range(0, s, 2)) for s in (WIDTH, HEIGHT)) == 16  # step 2 for 16 across
    flat = np.array([v.co.z for v in obj.data.vertices])
    evaluated = obj.evaluated_get(bpy.context.evaluated_depsgraph_get()).to_mesh()
    lifted = np.array([v.co.z for v in evaluated.vertices]) - flat
    obj.evaluated_get(bpy.context.evaluated_depsgraph_get()).to_mesh_clear()
    # the far side stays on the plane, the near side comes FAR − NEAR closer, times strength
    assert lifted.min() == pytest.approx(0.0, abs=0.01)
    assert lifted.max() == pytest.approx(0.5 * (FAR - NEAR), rel=0.01)


def test_by_default_the_displaced_plane_keeps_the_camera_view_usable(scene, files):
    """At strength 1 the near half (2 m) comes up to the camera 3× its size on the plane
    (6 m); by default it comes a quarter of the way, so nothing looks over 4/3 its size."""
    use(scene, files)
    shown = {}
    for strength in (None, 1.0):
        options = {} if strength is None else {"strength": strength}
        assert bpy.ops.sddr.build_displaced_plane(subdivisions=16, **options) == {"FINISHED"}
        obj = bpy.context.active_object
        evaluated = obj.evaluated_get(bpy.context.evaluated_depsgraph_get()).to_mesh()
        z = -np.array([v.co.z for v in evaluated.vertices])
        obj.evaluated_get(bpy.context.evaluated_depsgraph_get()).to_mesh_clear()
        shown[strength] = z.max() / z.min()  # how much larger the nearest part looks
    assert shown[1.0] == pytest.approx(FAR / NEAR, rel=0.01)
    assert shown[None] == pytest.approx(4 / 3, rel=0.01)


class Layout:
    """Stands in for a UILayout (none exists headless): records what a draw function shows."""

    def __init__(self) -> None:
        self.shown: list[str] = []
        self.active = True

    def prop(self, data, name: str, **options) -> None:
        self.shown.append(name)

    def operator(self, idname: str, **options) -> None:
        self.shown.append(idname)

    def label(self, text: str = "", **options) -> None:
        self.shown.append(text)

    def progress(self, text: str = "", **options) -> None:
        self.shown.append(f"progress: {text}")

    def row(self, **options) -> Layout:
        return self


def draw(panel: str) -> list[str]:
    layout = Layout()
    getattr(bpy.types, panel).draw(SimpleNamespace(layout=layout), bpy.context)
    return layout.shown


def test_sidebar_shows_the_settings_in_use_and_the_vertex_count_before_building(scene, files):
    use(scene, files, step=2)
    shown = draw("SDDR_PT_mesh")
    assert "Vertices: 192 of 32×24 px" in shown  # 16 × 12 before any mesh exists
    assert {"depth_scale", "fov", "step", "cut_ratio", "snap_ramps", "ramp_reach",
            "close_gaps", "sddr.build_mesh", "sddr.build_displaced_plane"} <= set(shown)
    assert not {"near", "focal_length", "target_vertices"} & set(shown)
    use(scene, files, depth_kind="DISPARITY", camera_model="LENS", density="TARGET",
        target_vertices=100)
    shown = draw("SDDR_PT_mesh")
    assert {"near", "far", "focal_length", "sensor_width", "target_vertices"} <= set(shown)
    assert "Vertices: 88 of 32×24 px" in shown  # step 3: 11 × 8
    assert draw("SDDR_PT_main") == ["image_path", "depth_path"]
    assert "sddr.estimate_and_refine" in draw("SDDR_PT_refine")
    progress = bpy.context.window_manager.sddr
    progress.running, progress.text = True, "SDDR: refining, pass 3/30"
    try:
        assert "progress: SDDR: refining, pass 3/30" in draw("SDDR_PT_refine")
    finally:
        progress.running = False
    assert {"sddr.add_camera", "sddr.export_gltf"} <= set(draw("SDDR_PT_output"))


# ------------------------------------------------------- what a depth file's values mean

def core_python() -> str:
    """The project's Python with sddr (never this one: torch must stay out of Blender's)."""
    python = Path(os.environ.get("SDDR_PYTHON", ROOT / ".venv" / "bin" / "python"))
    if not python.is_file():
        pytest.skip(f"no Python with sddr at {python} (set SDDR_PYTHON)")
    return str(python)


def run_in_sddr(code: str, folder: Path) -> None:
    subprocess.run([core_python(), "-c", code, str(folder)], cwd=ROOT, check=True)


DEMO = """if True:
    import sys
    from pathlib import Path
    import numpy as np
    from sddr_core.cli.main import main
    from sddr_core.cli.sample import sample_scene
    out = Path(sys.argv[1])
    assert main(["demo", "-o", str(out), "--device", "cpu"]) == 0
    np.save(out / "truth.npy", sample_scene()[1])
"""
"""`sddr demo` itself into the folder given, and the sample scene's true distances."""
READERS = """if True:
    import sys
    from pathlib import Path
    import cv2
    import numpy as np
    from sddr_core.files.depth_io import read_depth, write_depth
    out = Path(sys.argv[1])
    ramp = np.random.default_rng(0).uniform(0.5, 9.0, (24, 32)).astype(np.float32)
    codes = (ramp * 1000).astype(np.uint16)
    for name, fmt in (("float.png", None), ("eight.png", "png8"), ("float.exr", None),
                      ("float.tiff", None), ("float.npy", None)):
        write_depth(out / name, ramp, fmt)
    write_depth(out / "codes.png", codes)
    cv2.imwrite(str(out / "codes.tif"), codes)
    cv2.imwrite(str(out / "rgb.png"), np.dstack([ramp * 20] * 3).astype(np.uint8))
    np.save(out / "two.npy", np.dstack([ramp, -ramp]))
    np.savez(out / "expected.npz", **{p.name: read_depth(p) for p in out.iterdir()})
"""
"""Depth files in every format sddr writes, and others (16-bit TIFF, 8-bit RGB PNG, 2-channel
npy), with what sddr's reader gives for each."""


@pytest.fixture(scope="session")
def demo(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("demo")
    run_in_sddr(DEMO, folder)
    return folder


def test_demo_depth_fills_kind_and_distances_from_its_sidecar(scene, demo):
    """The sidecar of `sddr demo`'s refined.png gives kind and distances (not the field of
    view, which the demo does not write: decisions 182, 191); the mesh then puts the pixels at the
    scene's true distances (median 2.0 % off, as sddr's own test finds), where the defaults
    (Near 1, Far 10) put them far off."""
    truth = np.load(demo / "truth.npy")
    settings = scene.sddr
    settings.image_path = str(demo / "image.png")
    errors = {}
    for sidecar in (False, True):
        if not sidecar:
            (demo / "refined.png.sddr.json").rename(demo / "hidden.json")
        settings.depth_path = ""
        settings.depth_path = str(demo / "refined.png")
        if not sidecar:
            (demo / "hidden.json").rename(demo / "refined.png.sddr.json")
            assert (settings.depth_kind, settings.near, settings.far) == ("DISPARITY", 1, 10)
        assert bpy.ops.sddr.build_mesh(density="STEP", step=1, cut_edges=False,
                                       close_gaps=False) == {"FINISHED"}
        z = camera_distances(bpy.context.active_object).reshape(truth.shape)
        errors[sidecar] = float(np.median(np.abs(z - truth) / truth))
    assert (settings.depth_kind, settings.sidecar) == ("DISPARITY", "refined.png.sddr.json")
    nearest, farthest = float(truth.min()), float(truth.max())  # the sample scene's range
    assert nearest * 0.95 < settings.near < nearest * 1.1
    assert farthest * 0.9 < settings.far < farthest * 1.05
    assert errors[True] < 0.05 and errors[False] > 0.2, errors
    assert "Assumed, not in refined.png.sddr.json: Field of View" in draw("SDDR_PT_mesh")


def test_without_a_sidecar_the_sidebar_says_what_is_assumed(scene, files):
    use(scene, files)
    assert scene.sddr.sidecar == "" and scene.sddr.file_error == ""
    shown = draw("SDDR_PT_mesh")
    assert ("Assumed, the depth file has no sidecar: Depth Kind, Depth Scale, Field of View"
            in shown)
    assert "Distances in scene units (metres when Near/Far are metres)" in shown


def test_a_malformed_sidecar_is_shown_and_refused_naming_it(scene, files):
    (files["depth"].parent / "step.exr.sddr.json").write_text(
        '{"sddr_depth_meaning": 1, "kind": "height"}')
    use(scene, files)
    message = r"depth sidecar '.*step\.exr\.sddr\.json' is malformed: kind: 'height'"
    assert any(re.match(message, text) for text in draw("SDDR_PT_mesh"))
    before = data_counts()
    for name in ("build_mesh", "build_displaced_plane"):
        with pytest.raises(RuntimeError, match=message):
            getattr(bpy.ops.sddr, name)()
        assert data_counts() == before


def test_the_add_on_reads_depth_files_as_sddr_does(tmp_path, addon):
    """The same values, to the bit, from sddr's reader and the add-on's, for every format
    sddr writes and for integer files whose codes Blender would scale to 0..1."""
    run_in_sddr(READERS, tmp_path)
    images = importlib.import_module(f"{addon}.images")
    expected = np.load(tmp_path / "expected.npz")
    assert len(expected.files) == 9
    for name in expected.files:
        np.testing.assert_array_equal(images.read_depth(str(tmp_path / name)), expected[name],
                                      err_msg=name)


def _refined_scenes(tmp_path_factory, mode: str) -> dict:
    python = Path(os.environ.get("SDDR_PYTHON", ROOT / ".venv" / "bin" / "python"))
    if not python.is_file():
        pytest.skip(f"no Python with sddr at {python} (set SDDR_PYTHON)")
    folder = tmp_path_factory.mktemp(f"edges-{mode}")
    scenes = json.loads(mesh_edges.run_sddr(str(python), "scenes", str(folder), "--size",
                                            "small", "--mode", mode))
    return {"scenes": scenes, "folder": folder, "python": str(python)}


@pytest.fixture(scope="session")
def refined_scenes(tmp_path_factory) -> dict:
    """benchmarks/mesh_edges.py's small scenes (216×144: the sample scene, boxes, 1-, 2- and
    4-px poles), refined one-stage by the project's Python with the bundled weights."""
    return _refined_scenes(tmp_path_factory, "one-stage")


@pytest.fixture(scope="session")
def edge_figures(addon, refined_scenes) -> dict:
    """The three figures of each refined scene, built with the defaults and as before."""
    return {label: mesh_edges.measure(**refined_scenes, **settings)
            for label, settings in (("new", {}), ("old", mesh_edges.OLD_SETTINGS))}


def test_refined_depth_builds_with_no_gap_and_every_pixel_kept(edge_figures):
    for name, figures in edge_figures["new"].items():
        before = edge_figures["old"][name]
        assert figures["see_through"] <= 0.002, (name, figures)
        assert before["see_through"] > 0.05, (name, before)  # the outlines issue 24 shows
        assert figures["kept"] >= 0.95 and before["kept"] < 0.95, (name, figures, before)


def test_refined_depth_has_fewer_flying_vertices_than_before(edge_figures):
    for name in ("demo", "boxes"):  # with poles, the old mesh drops the band's vertices
        assert edge_figures["new"][name]["flying"] < edge_figures["old"][name]["flying"] / 1.3


@pytest.mark.xfail(strict=True, reason="not met one-stage: small steps that one-stage "
                                       "refinement spreads into gentle slopes, or loses, "
                                       "float between their sides (docs/blender.md, Depth edges)")
def test_refined_depth_has_at_most_five_percent_flying_vertices(edge_figures):
    assert all(f["flying"] <= 0.05 for f in edge_figures["new"].values()), edge_figures["new"]


def test_two_stage_refined_depth_has_at_most_five_percent_flying_vertices(addon,
                                                                          tmp_path_factory):
    """Two-stage refinement resolves the small steps one-stage leaves as slopes; at this size
    every scene meets issue 24's bounds (at 768×512 the 1-px poles do not: docs/blender.md)."""
    figures = mesh_edges.measure(**_refined_scenes(tmp_path_factory, "two-stage"))
    for name, f in figures.items():
        assert f["flying"] <= 0.05, (name, f)
        assert f["see_through"] <= 0.002 and f["kept"] >= 0.95, (name, f)


# --------------------------------------------------------------------- turned phone photos

def with_orientation(path: Path, orientation: int) -> Path:
    """`path` (a PNG or JPEG) with an EXIF orientation tag, as a phone stores a turned
    picture: a big-endian TIFF block with one SHORT entry, in an eXIf chunk after the PNG's
    header or an APP1 segment after the JPEG's start."""
    tiff = (b"MM\x00\x2a" + (8).to_bytes(4, "big") + (1).to_bytes(2, "big")
            + (0x0112).to_bytes(2, "big") + (3).to_bytes(2, "big") + (1).to_bytes(4, "big")
            + orientation.to_bytes(2, "big") + bytes(2) + bytes(4))
    data = path.read_bytes()
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        end = 8 + 8 + 13 + 4  # signature, IHDR's length and type, its 13 bytes, its CRC
        chunk = (len(tiff).to_bytes(4, "big") + b"eXIf" + tiff
                 + zlib.crc32(b"eXIf" + tiff).to_bytes(4, "big"))
        path.write_bytes(data[:end] + chunk + data[end:])
    else:
        segment = b"Exif\0\0" + tiff
        path.write_bytes(data[:2] + b"\xff\xe1" + (len(segment) + 2).to_bytes(2, "big")
                         + segment + data[2:])
    return path


@pytest.mark.parametrize("orientation, kind", [(3, "PNG"), (6, "PNG"), (8, "JPEG"),
                                               (6, "JPEG"), (2, "JPEG")])
def test_a_turned_photo_textures_the_mesh_as_sddr_reads_it(scene, files, tmp_path,
                                                           orientation, kind):
    """Blender's loader ignores EXIF orientation; sddr (OpenCV), ComfyUI and photo viewers
    turn the picture upright by it, so depth made from it is upright. Before, a photo turned by
    90° was refused as the wrong size and one turned by 180° textured the mesh upside down."""
    turned = orientation in (5, 6, 7, 8)
    shape = (WIDTH, HEIGHT) if turned else (HEIGHT, WIDTH)
    blocks = np.random.default_rng(orientation).uniform(0, 1, (shape[0] // 8, shape[1] // 8, 3))
    stored = np.kron(blocks, np.ones((8, 8, 1)))  # blocks of 8: a JPEG keeps them exactly
    name = tmp_path / f"turned.{'png' if kind == 'PNG' else 'jpg'}"
    image = bpy.data.images.new(name.stem, shape[1], shape[0], alpha=False)
    rgba = np.ones((*shape, 4), np.float32)
    rgba[..., :3] = stored
    image.pixels.foreach_set(rgba[::-1].ravel())
    image.filepath_raw, image.file_format = str(name), kind
    if kind == "JPEG":
        bpy.context.scene.render.image_settings.quality = 100
    image.save()
    bpy.data.images.remove(image)
    photo = with_orientation(name, orientation)
    run_in_sddr("import sys, numpy as np\n"
                "from sddr_core.files.depth_io import read_image\n"
                f"np.save(sys.argv[1], read_image({str(photo)!r}))", tmp_path / "sddr.npy")
    upright = np.load(tmp_path / "sddr.npy").astype(np.float32) / 255
    assert upright.shape == (HEIGHT, WIDTH, 3)
    use(scene, files, image_path=str(photo))
    assert bpy.ops.sddr.build_mesh() == {"FINISHED"}
    texture = bpy.context.active_object.data.materials[0].node_tree.nodes["Image Texture"].image
    assert tuple(texture.size) == (WIDTH, HEIGHT)
    pixels = np.array(texture.pixels[:], np.float32).reshape(HEIGHT, WIDTH, 4)[::-1, :, :3]
    assert np.abs(pixels - upright).max() <= 3 / 255


# -------------------------------------------------------------------------------- export

def test_glb_export_embeds_a_scaled_unlit_texture_and_loads_back(scene, files, tmp_path):
    use(scene, files, unlit=True, cut_edges=True)
    bpy.ops.sddr.build_mesh()
    faces = len(bpy.context.active_object.data.polygons)
    target = tmp_path / "out" / "scene.glb"
    target.parent.mkdir()
    assert bpy.ops.sddr.export_gltf(filepath=str(target), max_texture_size=16) == {"FINISHED"}
    assert sorted(p.name for p in target.parent.iterdir()) == ["scene.glb"]
    header = json.loads(target.read_bytes()[20:20 + int.from_bytes(
        target.read_bytes()[12:16], "little")])
    assert "KHR_materials_unlit" in header["extensionsUsed"]
    assert len(header["images"]) == 1 and "bufferView" in header["images"][0]  # embedded
    assert len(bpy.data.images) == 1  # the scaled copy is gone again
    bpy.ops.wm.read_homefile(use_empty=True)
    bpy.ops.import_scene.gltf(filepath=str(target))
    (mesh,) = bpy.data.meshes
    assert len(mesh.polygons) in (faces, 2 * faces)  # quads, or triangulated
    (image,) = bpy.data.images
    assert tuple(image.size) == (16, 12)


# ----------------------------------------------------------------------------- bad input

@pytest.mark.parametrize("problem, message", [
    ("missing depth", "depth file '.*missing.exr' does not exist"),
    ("missing image", "image file '.*missing.png' does not exist"),
    ("size mismatch", "is 32×24 but depth file .* is 16×12: they must be the same size"),
    ("nan depth", "no finite value"),
    ("unreadable depth", "is not a readable image"),
    ("pfm depth", r"\.pfm extension is not readable here"),
    ("all cut", "gives no face"),
])
def test_bad_input_is_reported_and_leaves_the_scene_as_it_was(scene, files, tmp_path,
                                                             problem, message):
    use(scene, files)
    if problem == "missing depth":
        scene.sddr.depth_path = str(tmp_path / "missing.exr")
    elif problem == "missing image":
        scene.sddr.image_path = str(tmp_path / "missing.png")
    elif problem == "size mismatch":
        save_image(tmp_path / "small.exr", np.ones((12, 16), np.float32), depth=True)
        scene.sddr.depth_path = str(tmp_path / "small.exr")
    elif problem == "nan depth":
        np.save(tmp_path / "nan.npy", np.full((HEIGHT, WIDTH), np.nan, np.float32))
        scene.sddr.depth_path = str(tmp_path / "nan.npy")
    elif problem == "unreadable depth":
        (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
        scene.sddr.depth_path = str(tmp_path / "broken.png")
    elif problem == "pfm depth":
        (tmp_path / "depth.pfm").write_bytes(b"Pf\n2 2\n-1\n" + bytes(16))
        scene.sddr.depth_path = str(tmp_path / "depth.pfm")
    else:  # with Close Gaps off: closing faces would cover a checkerboard too
        scene.sddr.close_gaps = False
        checker = np.where(np.indices((HEIGHT, WIDTH)).sum(0) % 2, NEAR, FAR)
        np.save(tmp_path / "checker.npy", checker.astype(np.float32))
        scene.sddr.depth_path = str(tmp_path / "checker.npy")
    before = data_counts()
    operators = ["build_mesh"] + ([] if problem == "all cut" else ["build_displaced_plane"])
    for name in operators:  # a displaced plane has nothing to cut
        with pytest.raises(RuntimeError, match=message):
            getattr(bpy.ops.sddr, name)()
        assert data_counts() == before


# ---------------------------------------------------------------------------- refinement

@pytest.fixture(scope="session")
def backend(tmp_path_factory) -> dict[str, str]:
    """The project's Python with sddr (never this one) and tiny models made by it."""
    python = Path(os.environ.get("SDDR_PYTHON", ROOT / ".venv" / "bin" / "python"))
    if not python.is_file():
        pytest.skip(f"no Python with sddr at {python} (set SDDR_PYTHON)")
    folder = tmp_path_factory.mktemp("backend")
    made = subprocess.run(
        [str(python), "-c", "import json, sys; from tests.test_blender_backend import "
         "make_backend_fixtures; print(json.dumps(make_backend_fixtures(sys.argv[1])))",
         str(folder)], cwd=ROOT, capture_output=True, text=True)
    if made.returncode != 0:
        pytest.skip(f"{python} cannot make the tiny backend: {made.stderr[-300:]}")
    return {"python": str(python), **json.loads(made.stdout.splitlines()[-1])}


@pytest.fixture
def refine_setup(backend, scene, tmp_path, monkeypatch, addon):
    monkeypatch.setenv("HF_HUB_CACHE", backend["hf_cache"])
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    prefs = bpy.context.preferences.addons[addon].preferences
    prefs.python, prefs.weights, prefs.device = backend["python"], backend["weights"], "cpu"
    prefs.output_folder = str(tmp_path / "depth")
    scene.sddr.image_path = backend["photo"]
    yield prefs
    prefs.python = prefs.output_folder = ""
    prefs.weights = "default"


def test_check_backend_reports_sddr_and_torch(refine_setup):
    assert bpy.ops.sddr.check_backend() == {"FINISHED"}


def test_check_backend_names_uncached_weights_and_the_online_setting(refine_setup):
    """Offline (*Allow Online Access* off, the bpy module's default), a predictor that is not
    in the cache is not OK: the setting is named, with the command that fetches it."""
    assert not bpy.app.online_access
    refine_setup.predictor = "depth-anything-v2-base"
    try:
        with pytest.raises(RuntimeError, match="cannot run Estimate & Refine: the weights of "
                           "predictor depth-anything-v2-base are not in the Hugging Face cache"
                           ", and Blender's Allow Online Access .* is off.*hf download "
                           "depth-anything/Depth-Anything-V2-Base-hf --revision"):
            bpy.ops.sddr.check_backend()
    finally:
        refine_setup.predictor = "depth-anything-v2-small"


def test_check_backend_names_a_missing_predictors_extra(refine_setup, tmp_path):
    """The project's Python with `import transformers` failing, as without the extra."""
    without = ("import runpy, sys; sys.modules['transformers'] = None; "
               "sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], run_name='__main__')")
    refine_setup.python = _fake_python(tmp_path, f'exec "{refine_setup.python}" -c "{without}" '
                                                 '"$@"')
    with pytest.raises(RuntimeError, match=r"the 'predictors' extra \(transformers\) is not "
                                           r"installed: .* -m pip install -e '.*\[predictors\]'"):
        bpy.ops.sddr.check_backend()


def test_estimate_and_refine_writes_depth_and_builds_the_mesh(refine_setup, scene):
    assert bpy.ops.sddr.estimate_and_refine() == {"FINISHED"}
    written = Path(scene.sddr.depth_path)
    assert written.parent == Path(refine_setup.output_folder) and written.suffix == ".exr"
    assert scene.sddr.depth_kind == "DISPARITY"
    obj = bpy.context.active_object
    assert obj.name.startswith("SDDR") and len(obj.data.polygons) > 0
    pixels = {(round(u * 64 - 0.5, 3), round((1 - v) * 48 - 0.5, 3))
              for u, v in (loop.uv for loop in obj.data.uv_layers["UVMap"].data)}
    assert {(0.0, 0.0), (63.0, 47.0)} <= pixels  # the photo's grid, corner to corner
    assert obj.data.materials[0].node_tree.nodes["Image Texture"].image.size[:] == (64, 48)


def test_without_online_access_the_worker_stays_offline(refine_setup, tmp_path, monkeypatch):
    assert not bpy.app.online_access  # the bpy module's default
    monkeypatch.delenv("HF_HUB_OFFLINE")
    seen = tmp_path / "environment"
    refine_setup.python = _fake_python(tmp_path, f'echo "$HF_HUB_OFFLINE" > "{seen}"; exit 3')
    with pytest.raises(RuntimeError, match="exited with status 3"):
        bpy.ops.sddr.estimate_and_refine()
    assert seen.read_text().strip() == "1"


def test_without_online_access_missing_weights_name_the_setting(refine_setup, scene):
    refine_setup.predictor = "depth-anything-v2-base"
    try:
        with pytest.raises(RuntimeError) as info:
            bpy.ops.sddr.estimate_and_refine()
    finally:
        refine_setup.predictor = "depth-anything-v2-small"
    message = str(info.value)
    assert "Blender's Allow Online Access (Edit › Preferences › System › Network) is off. Turn "\
           "it on to download them once" in message
    assert "hf download depth-anything/Depth-Anything-V2-Base-hf" in message
    assert "HF_HUB_OFFLINE" not in message


@pytest.mark.parametrize("snap", [True, False])
def test_snap_edges_checkbox_reaches_the_worker(refine_setup, scene, tmp_path, snap):
    assert not scene.sddr.snap_edges  # off by default (decision 152)
    assert "snap_edges" in draw("SDDR_PT_refine")
    arguments = tmp_path / "arguments"
    refine_setup.python = _fake_python(tmp_path, f'echo "$@" > "{arguments}"; exit 3')
    scene.sddr.snap_edges = snap
    with pytest.raises(RuntimeError, match="exited with status 3"):
        bpy.ops.sddr.estimate_and_refine()
    assert ("--no-snap-edges" in arguments.read_text().split()) == (not snap)


def _fake_python(tmp_path: Path, body: str) -> str:
    script = tmp_path / "python"
    script.write_text(f"#!/bin/sh\n{body}\n")
    script.chmod(0o755)
    return str(script)


@pytest.mark.parametrize("case, message", [
    ("crash", "killed by signal SIGKILL before finishing"),
    ("no sddr", "cannot import sddr"),
    ("missing", "does not exist"),
    ("sddr error", "not known; known predictors"),
    ("missing photo", "image file '.*gone.png' does not exist"),
])
def test_refinement_failures_are_reported_and_leave_no_trace(refine_setup, scene, tmp_path,
                                                             case, message):
    if case == "crash":  # one progress line, then killed as the OOM killer would
        refine_setup.python = _fake_python(
            tmp_path, 'echo \'{"event": "progress", "done": 0, "total": 1}\'; kill -9 $$')
    elif case == "no sddr":
        subprocess.run([sys.executable, "-m", "venv",
                        "--without-pip", str(tmp_path / "bare")], check=True)
        refine_setup.python = str(tmp_path / "bare" / "bin" / "python")
    elif case == "missing":
        refine_setup.python = str(tmp_path / "no-python")
    elif case == "missing photo":
        scene.sddr.image_path = str(tmp_path / "gone.png")
    else:
        refine_setup.predictor = "no-such-model"
    before = (data_counts(), scene.sddr.depth_path)
    try:
        with pytest.raises(RuntimeError, match=message):
            bpy.ops.sddr.estimate_and_refine()
    finally:
        refine_setup.predictor = "depth-anything-v2-small"
    assert (data_counts(), scene.sddr.depth_path) == before
    output = Path(refine_setup.output_folder)
    assert not output.exists() or list(output.iterdir()) == []


class ModalRun:
    """Drives the operator's interactive path (invoke's start, then modal on timer and Esc
    events) as Blender's event loop would; headless there is no event loop to do it."""

    def __init__(self, addon: str, context, operator: str = "SDDR_OT_estimate_and_refine"
                 ) -> None:
        operator = getattr(sys.modules[f"{addon}.operators"], operator)
        for name in ("_start", "_begin", "modal", "_show", "_end", "_finish"):
            setattr(self, name, getattr(operator, name).__get__(self))
        self.UNIT, self.CANCELLED = operator.UNIT, operator.CANCELLED
        self.reports: list[tuple[set, str]] = []
        self.context = context
        self._job = self._start(context)  # what invoke does, but for the modal handler
        self._begin(context)

    def report(self, level: set, message: str) -> None:
        self.reports.append((level, message))

    def send(self, kind: str) -> set[str]:
        return self.modal(self.context, SimpleNamespace(type=kind))


def test_interactive_refinement_streams_progress_then_builds(refine_setup, scene, addon):
    scene.sddr.mode, scene.sddr.steps = "two-stage", 1
    run, texts = ModalRun(addon, bpy.context), []
    while (result := run.send("TIMER")) == {"PASS_THROUGH"}:
        texts.append(bpy.context.window_manager.sddr.text)
        time.sleep(0.05)
    assert result == {"FINISHED"}, run.reports
    shown = [t for t in dict.fromkeys(texts) if "pass" in t]
    assert shown[-1] == "SDDR: refining, pass 5/5" and len(shown) >= 2
    assert not bpy.context.window_manager.sddr.running
    assert Path(scene.sddr.depth_path).is_file() and bpy.context.active_object is not None


def test_esc_cancels_the_refinement_and_leaves_no_trace(refine_setup, scene, addon):
    scene.sddr.mode, scene.sddr.steps = "two-stage", 8
    before = (data_counts(), scene.sddr.depth_path)
    run = ModalRun(addon, bpy.context)
    assert bpy.context.window_manager.sddr.text == "Starting sddr…"
    while "pass" not in bpy.context.window_manager.sddr.text:  # the models are loaded
        assert run.send("TIMER") == {"PASS_THROUGH"}, run.reports
        time.sleep(0.05)
    assert run.send("ESC") == {"CANCELLED"}
    assert run._job.process.returncode is not None and run._job.cancelled
    assert ({"WARNING"}, "Refinement cancelled; no depth file written") in run.reports
    assert (data_counts(), scene.sddr.depth_path) == before
    output = Path(refine_setup.output_folder)
    assert not output.exists() or list(output.iterdir()) == []
