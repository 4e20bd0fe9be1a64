"""The animated mesh (numbered depth or photo frames → a mesh that follows them) in the real
`bpy` wheel, run as tests/test_blender_addon.py is, whose fixtures it uses:

    .venv-bpy/bin/python -m pytest -q -p no:cacheprovider --noconftest \
        tests/test_blender_animation.py

Depth frames are made here: a box moving across a wall over 8 frames, as 32-bit EXR metric
depth, or as sddr writes depth (16-bit PNG, each frame normalised to its own range, with a
sidecar saying so), so the truth at each frame is known.
"""

from __future__ import annotations

import math
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from blender_addon.depth_meaning import DepthMeaning, sidecar_path
from tests.test_blender_addon import (
    ROOT,
    ModalRun,
    addon,
    backend,
    bpy,
    data_counts,
    draw,
    refine_setup,
    save_image,
    scene,
    write_png16,
)

FIXTURES = (addon, backend, refine_setup, scene)
"""tests/test_blender_addon.py's fixtures, which pytest finds here by name."""

WIDTH, HEIGHT, FRAMES, BOX, WALL = 40, 30, 8, 2.0, 5.0
AT_0, AT_1 = 8.0, 1.0
"""The sidecars' distances of disparity 0 and 1."""


def box_depth(frame: int) -> np.ndarray:
    """Metric depth of frame `frame` (1-based): a wall with a slight slope and a 6 % step
    (cut at a cut ratio of 5 %, not at 7 %), and a 10×12 px box moving 3 px right and 0.05 m
    back each frame."""
    z = np.full((HEIGHT, WIDTH), WALL, np.float32) + np.linspace(0, 0.2, WIDTH,
                                                                  dtype=np.float32)[None]
    z[:, 30:] *= 1.06
    left = 4 + 3 * (frame - 1)
    z[9:21, left:left + 10] = BOX + 0.05 * (frame - 1)
    return z


def exr_frames(folder: Path) -> Path:
    folder.mkdir()
    for frame in range(1, FRAMES + 1):
        save_image(folder / f"depth_{frame:04d}.exr", box_depth(frame), depth=True)
    return folder


def png_frames(folder: Path, fovs=(50.0,) * FRAMES) -> Path:
    """Disparity as sddr writes it: codes 0..65535 over each frame's own range, a sidecar with
    that range, the distances of disparity 0 and 1 and the field of view."""
    folder.mkdir()
    for frame, fov in zip(range(1, FRAMES + 1), fovs, strict=True):
        disparity = (1 / box_depth(frame) - 1 / AT_0) / (1 / AT_1 - 1 / AT_0)
        low, high = float(disparity.min()), float(disparity.max())
        codes = np.round((disparity - low) / (high - low) * 65535)
        path = write_png16(folder / f"shot_{frame:03d}.png", codes.astype(np.uint16))
        meaning = DepthMeaning("disparity", "relative", ((0, 65535), (low, high)),
                               (AT_0, AT_1), fov, "test")
        sidecar_path(path).write_text(meaning.to_json())
    return folder


def evaluated_distances(obj, frame: int, width: int = WIDTH,
                        height: int = HEIGHT) -> tuple[np.ndarray, int]:
    """(distance along the view axis per vertex as H×W, faces) of `obj` at `frame`."""
    bpy.context.scene.frame_set(frame)
    mesh = obj.evaluated_get(bpy.context.evaluated_depsgraph_get()).data
    positions = np.empty(len(mesh.vertices) * 3, np.float32)
    mesh.attributes["position"].data.foreach_get("vector", positions)
    uv = np.empty(len(mesh.vertices) * 3, np.float32)
    mesh.attributes["sddr_uv"].data.foreach_get("vector", uv)
    columns = np.round(uv[0::3] * width - 0.5).astype(int)
    rows = np.round((1 - uv[1::3]) * height - 0.5).astype(int)
    z = np.full((height, width), np.nan)
    z[rows, columns] = -positions[2::3]
    return z, len(mesh.polygons)


def cut_quads(z: np.ndarray, ratio: float) -> int:
    corners = np.stack([z[:-1, :-1], z[1:, :-1], z[1:, 1:], z[:-1, 1:]])
    return int(np.count_nonzero(corners.max(0) > corners.min(0) * (1 + ratio)))


def build(scene, depth_frames: Path | str, **settings) -> bpy.types.Object:
    scene.sddr.depth_frames = str(depth_frames)
    scene.sddr.fov = 60.0
    for name, value in settings.items():
        setattr(scene.sddr, name, value)
    assert bpy.ops.sddr.build_animated_mesh() == {"FINISHED"}
    return bpy.context.active_object


# ------------------------------------------------------------------------------ depth frames

def test_at_each_frame_the_vertices_have_that_frames_depth_and_its_cuts(scene, tmp_path):
    obj = build(scene, exr_frames(tmp_path / "exr"), depth_kind="DEPTH", cut_edges=True,
                cut_ratio=0.05)
    assert (scene.frame_start, scene.frame_end) == (1, FRAMES)
    quads = (WIDTH - 1) * (HEIGHT - 1)
    for frame in (1, 4, FRAMES, 2):  # out of order: nothing is left from the frame before
        z, faces = evaluated_distances(obj, frame)
        np.testing.assert_allclose(z, box_depth(frame), rtol=1e-6)
        assert faces == quads - cut_quads(box_depth(frame), 0.05)
        assert faces < quads  # the box's outline was cut


def test_cutting_is_a_live_modifier_setting(scene, tmp_path):
    obj = build(scene, exr_frames(tmp_path / "exr"), depth_kind="DEPTH", cut_edges=False)
    assert evaluated_distances(obj, 3)[1] == (WIDTH - 1) * (HEIGHT - 1)
    modifier = obj.modifiers["SDDR Depth Frames"]
    items = modifier.node_group.interface.items_tree
    modifier[items["Cut Edges"].identifier] = True
    modifier[items["Cut Ratio"].identifier] = 0.5  # 2.1 m vs 5.x m: still cut
    obj.update_tag()
    assert evaluated_distances(obj, 3)[1] == (WIDTH - 1) * (HEIGHT - 1) - cut_quads(
        box_depth(3), 0.5)


def test_png_frames_normalised_each_to_its_range_land_at_their_true_distances(scene, tmp_path):
    """Each frame's codes mean other values (its sidecar says which); the first frame's
    sidecar gives kind, distances and field of view, and the later frames keep its units."""
    fovs = (50.0,) + (70.0,) * (FRAMES - 1)  # the camera is the first frame's
    obj = build(scene, png_frames(tmp_path / "png", fovs) / "shot_001.png", cut_edges=False)
    assert scene.sddr.depth_kind == "DISPARITY"  # the scene's own setting, left as it was
    for frame in range(1, FRAMES + 1):
        z, _ = evaluated_distances(obj, frame)
        np.testing.assert_allclose(z, box_depth(frame), rtol=2e-4)
    width, _, fx, *_ = obj["sddr_intrinsics"]
    assert math.degrees(2 * math.atan(width / (2 * fx))) == pytest.approx(50.0)
    assert bpy.ops.sddr.add_camera() == {"FINISHED"}
    assert scene.camera.data.lens == pytest.approx(18 / math.tan(math.radians(25)))


def test_a_one_frame_sequence_is_a_still(scene, tmp_path):
    folder = tmp_path / "one"
    folder.mkdir()
    save_image(folder / "depth_0007.exr", box_depth(1), depth=True)
    obj = build(scene, folder, depth_kind="DEPTH", cut_edges=False)
    assert (scene.frame_start, scene.frame_end) == (7, 7)
    np.testing.assert_allclose(evaluated_distances(obj, 7)[0], box_depth(1), rtol=1e-6)


def test_photo_frames_texture_the_mesh_frame_by_frame(scene, tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    for frame in range(1, FRAMES + 1):
        save_image(photos / f"rgb_{frame:04d}.png", np.full((HEIGHT, WIDTH, 3), frame / 10),
                   depth=False)
    scene.sddr.photo_frames = str(photos)
    obj = build(scene, exr_frames(tmp_path / "exr"), depth_kind="DEPTH")
    node = obj.data.materials[0].node_tree.nodes["Image Texture"]
    assert node.image.source == "SEQUENCE" and Path(node.image.filepath).name == "rgb_0001.png"
    user = node.image_user
    assert (user.frame_start, user.frame_duration, user.frame_offset) == (1, FRAMES, 0)


@pytest.mark.parametrize("problem, message", [
    ("gap", r"frames 1…8 in '.*' miss 1 number\(s\): 5; a sequence must have no gap"),
    ("size", r"depth frames: '.*depth_0003.exr' is 20×15 but the first, 'depth_0001.exr', is "
             r"40×30: every frame must have the same size"),
    ("two", r"holds several numbered sequences \(depth_#.exr, other_#.exr\)"),
    ("padding", r"'depth_10.exr' is numbered unlike 'depth_0001.exr' \(write every number "
                r"with 4 digits"),
    ("empty", r"holds no numbered .* files"),
    ("photo size", r"photo frames: '.*rgb_0001.png' is 20×15 but the depth frames is 40×30"),
    ("photo numbers", r"photo frames 2…9 and depth frames 1…8: they must have the same frame "
                      r"numbers"),
])
def test_bad_sequences_are_refused_naming_the_file_and_leave_nothing(scene, tmp_path, problem,
                                                                      message):
    folder = exr_frames(tmp_path / "exr")
    if problem == "gap":
        (folder / "depth_0005.exr").unlink()
    elif problem == "size":
        save_image(folder / "depth_0003.exr", np.ones((15, 20), np.float32), depth=True)
    elif problem == "two":
        save_image(folder / "other_0001.exr", box_depth(1), depth=True)
    elif problem == "padding":
        save_image(folder / "depth_10.exr", box_depth(1), depth=True)
    elif problem == "empty":
        for file in folder.iterdir():
            file.unlink()
    else:
        photos = tmp_path / "photos"
        photos.mkdir()
        small = problem == "photo size"
        for frame in range(1, FRAMES + 1):
            save_image(photos / f"rgb_{frame + (not small):04d}.png",
                       np.zeros((15, 20, 3) if small else (HEIGHT, WIDTH, 3)), depth=False)
        scene.sddr.photo_frames = str(photos)
    scene.sddr.depth_frames, scene.sddr.depth_kind = str(folder), "DEPTH"
    before = data_counts()
    with pytest.raises(RuntimeError, match=message):
        bpy.ops.sddr.build_animated_mesh()
    assert data_counts() == before
    assert len(bpy.data.node_groups) == 0


def test_pixels_without_depth_drop_their_vertices_on_their_frame_only(scene, tmp_path):
    folder = exr_frames(tmp_path / "exr")
    holed = box_depth(2)
    holed[0:5, 0:6] = 0.0  # no depth (metric 0), as the still mesh reads it
    holed[25:, 35:] = np.nan
    save_image(folder / "depth_0002.exr", holed, depth=True)
    obj = build(scene, folder, depth_kind="DEPTH", cut_edges=False)
    z, faces = evaluated_distances(obj, 2)
    assert np.isnan(z[0:5, 0:6]).all() and np.isnan(z[25:, 35:]).all()
    assert np.isfinite(z).sum() == WIDTH * HEIGHT - 30 - 25
    assert faces == (WIDTH - 1) * (HEIGHT - 1) - 5 * 6 - 5 * 5  # quads touching the holes
    assert np.isfinite(evaluated_distances(obj, 3)[0]).all()


def test_undo_removes_the_animated_mesh(scene, tmp_path):
    scene.sddr.depth_frames, scene.sddr.depth_kind = str(exr_frames(tmp_path / "exr")), "DEPTH"
    assert bpy.ops.sddr.build_animated_mesh("EXEC_DEFAULT", True) == {"FINISHED"}
    assert len(bpy.data.objects) == 1
    bpy.ops.ed.undo()
    assert len(bpy.data.objects) == 0


def test_no_depth_frames_set_is_refused():
    with pytest.raises(RuntimeError, match="no depth frames set"):
        bpy.ops.sddr.build_animated_mesh()


def test_the_animation_panel_offers_both_paths_and_says_what_the_mesh_does(scene):
    shown = draw("SDDR_PT_animation")
    assert {"photo_frames", "sddr.refine_frames", "depth_frames",
            "sddr.build_animated_mesh"} <= set(shown)
    assert "Animated: cut per frame; ramps not snapped, cuts not closed" in shown
    progress = bpy.context.window_manager.sddr
    progress.running, progress.text = True, "SDDR: refining, frame 3/8"
    try:
        shown = draw("SDDR_PT_animation")
    finally:
        progress.running = False
    assert "progress: SDDR: refining, frame 3/8" in shown
    assert "sddr.refine_frames" not in shown


# ------------------------------------------------------------------------------ photo frames

def test_refine_frames_refines_the_photos_as_a_clip_and_builds_the_animated_mesh(
        refine_setup, scene, tmp_path):
    photos = tmp_path / "clip"
    photos.mkdir()
    rng = np.random.default_rng(0)
    for frame in range(1, 4):
        save_image(photos / f"frame_{frame:02d}.png", rng.uniform(0, 1, (48, 64, 3)),
                   depth=False)
    scene.sddr.photo_frames = str(photos)
    assert bpy.ops.sddr.refine_frames() == {"FINISHED"}
    written = Path(refine_setup.output_folder) / "clip.clip"
    names = sorted(p.name for p in written.iterdir())
    assert names == [f"frame_{f:02d}.png{s}" for f in range(1, 4) for s in ("", ".sddr.json")]
    assert Path(scene.sddr.depth_frames) == written / "frame_01.png"
    assert scene.sddr.depth_kind == "DISPARITY"
    obj = bpy.context.active_object
    assert obj.modifiers["SDDR Depth Frames"].node_group is not None
    assert (scene.frame_start, scene.frame_end) == (1, 3)
    for frame in (1, 3):
        z, faces = evaluated_distances(obj, frame, 64, 48)
        assert np.isfinite(z).all() and faces > 0


def test_refine_frames_takes_a_video_and_textures_the_mesh_with_its_frames(
        refine_setup, backend, scene, tmp_path):
    video = tmp_path / "walk.mkv"
    made = subprocess.run(  # PyAV lives in sddr's Python, not in Blender's
        [backend["python"], "-c", "import sys; from pathlib import Path; from tests.test_video_cli "
         "import make_video; make_video(Path(sys.argv[1]), frames=4)", str(video)],
        cwd=ROOT, capture_output=True, text=True)
    if made.returncode != 0:
        pytest.skip(f"sddr's Python cannot write a video (the 'video' extra): {made.stderr[-200:]}")
    scene.sddr.photo_frames = str(video)
    assert bpy.ops.sddr.refine_frames() == {"FINISHED"}
    written = Path(refine_setup.output_folder) / "walk.clip"
    assert sorted(p.name for p in written.glob("*.png")) == [
        f"walk_{f:06d}.png" for f in range(1, 5)]
    assert Path(scene.sddr.depth_frames) == written / "walk_000001.png"
    assert Path(scene.sddr.photo_frames) == written / "photos" / "walk_000001.png"
    obj = bpy.context.active_object
    assert (scene.frame_start, scene.frame_end) == (1, 4)
    texture = next(n for n in obj.data.materials[0].node_tree.nodes if n.type == "TEX_IMAGE")
    assert Path(bpy.path.abspath(texture.image.filepath)).parent == written / "photos"
    for frame in (1, 4):
        z, faces = evaluated_distances(obj, frame, 96, 64)  # the video's frame size
        assert np.isfinite(z).all() and faces > 0
    assert bpy.ops.sddr.build_animated_mesh() == {"FINISHED"}  # Photo Frames now numbered


def test_build_animated_mesh_refuses_a_video_as_photo_frames_saying_what_takes_it(scene,
                                                                                 tmp_path):
    video = tmp_path / "walk.mp4"
    video.write_bytes(b"")
    scene.sddr.depth_frames = str(png_frames(tmp_path / "depth"))
    scene.sddr.photo_frames = str(video)
    with pytest.raises(RuntimeError, match="is a video: Refine Frames decodes and refines it"):
        bpy.ops.sddr.build_animated_mesh()


def _photo_clip(folder: Path, count: int) -> Path:
    folder.mkdir()
    rng = np.random.default_rng(0)
    for frame in range(1, count + 1):
        save_image(folder / f"frame_{frame:02d}.png", rng.uniform(0, 1, (48, 64, 3)),
                   depth=False)
    return folder


def test_interactive_refine_frames_shows_progress_per_frame(refine_setup, scene, addon,
                                                           tmp_path):
    scene.sddr.photo_frames = str(_photo_clip(tmp_path / "clip", 5))
    run, texts = ModalRun(addon, bpy.context, "SDDR_OT_refine_frames"), []
    while (result := run.send("TIMER")) == {"PASS_THROUGH"}:
        texts.append(bpy.context.window_manager.sddr.text)
        time.sleep(0.02)
    assert result == {"FINISHED"}, run.reports
    shown = [t for t in dict.fromkeys(texts) if "frame" in t]
    assert shown[-1] == "SDDR: refining, frame 5/5" and len(shown) >= 2
    assert bpy.context.active_object.modifiers["SDDR Depth Frames"]


def test_esc_stops_refine_frames_and_keeps_the_frames_done(refine_setup, scene, addon,
                                                          tmp_path):
    scene.sddr.photo_frames = str(_photo_clip(tmp_path / "clip", 40))
    before = data_counts()
    run = ModalRun(addon, bpy.context, "SDDR_OT_refine_frames")
    while "frame 1/" not in bpy.context.window_manager.sddr.text:
        assert run.send("TIMER") == {"PASS_THROUGH"}, run.reports
        time.sleep(0.02)
    assert run.send("ESC") == {"CANCELLED"}
    assert run._job.cancelled and run._job.process.returncode == 143
    assert any("the depth frames refined so far are complete" in m for _, m in run.reports)
    assert data_counts() == before
    written = sorted(p.name for p in (Path(refine_setup.output_folder) / "clip.clip").iterdir()
                     if p.suffix == ".png")
    assert 1 <= len(written) < 40
    assert written == [f"frame_{f:02d}.png" for f in range(1, len(written) + 1)]
