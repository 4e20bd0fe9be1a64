"""Playback speed of an animated depth mesh at 720p in the `bpy` wheel, per way of animating
it, and the picture of docs/blender.md's animation section.

Frames per second of `scene.frame_set(f)` plus the evaluated object (what the viewport and the
renderer ask for each frame), over every frame of a clip, after a warm-up pass; the median of
`--passes` passes, with the slowest and fastest. The candidates (decision 260):

- the add-on's `sddr.build_animated_mesh`: a Geometry Nodes modifier reading the depth frames
  as an image sequence, cut per frame (the default) and with Cut Edges off, at every pixel
  (the default density at 720p) and at every second one (Step 2);
- shape keys: one key per frame holding that frame's vertices, its value keyed to 1 on its
  frame only (no per-frame cut: one topology for all frames; memory grows with the clip).

The depth frames are made by sddr's own writer in the project's Python (`SDDR_PYTHON`, default
.venv/bin/python): a box sliding across a sloped wall, 16-bit PNG disparity, each frame
normalised to its own range, with a sidecar. Run from the repository root:

    .venv-bpy/bin/python benchmarks/blender_animation.py [--frames 24] [--passes 5]
    .venv-bpy/bin/python benchmarks/blender_animation.py --picture docs/img/blender-animation.png

The picture: clip `objects` of seed 2 (docs/video.md), refined in clip mode with the bundled
weights from its simulated inputs, built with the defaults, and rendered by Cycles at four
frames from the added camera (top) and from one moved 0.6 m to the right and turned back to
the scene (bottom).
"""

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("BLENDER_USER_RESOURCES", tempfile.mkdtemp(prefix="sddr-blender-"))
import bpy  # noqa: E402  (after the environment: it reads BLENDER_USER_RESOURCES)
import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from blender_mesh import install  # noqa: E402  (the same installation as the mesh benchmark)

ROOT = Path(__file__).resolve().parents[1]
BOX_FRAMES = """
import sys
from pathlib import Path
import numpy as np
from sddr_core.files.sidecar import write_depth_with_meaning
folder, frames, height, width = Path(sys.argv[1]), *map(int, sys.argv[2:])
for frame in range(frames):
    z = 5.0 + np.linspace(0, 1, width, dtype=np.float32)[None].repeat(height, 0)
    left = int(width * (0.1 + 0.6 * frame / max(1, frames - 1)))
    z[height // 4:3 * height // 4, left:left + width // 5] = 2.0
    write_depth_with_meaning(folder / f"box_{frame + 1:04d}.png", 1 / z, kind="disparity",
                             units="relative", fov_degrees=60.0, written_by="benchmark")
"""
"""A box sliding across a wall, written as sddr writes depth (argv: folder, frames, H, W)."""
CLIP_FRAMES = """
import json, sys
from pathlib import Path
import numpy as np
from sddr_core import load_refiner
from sddr_core.files.sidecar import write_depth_with_meaning
from sddr_core.maps.robust_range import robust_range
from sddr_core.predictors.flicker import clip_predictions
from sddr_core.scenes.sequence import render_clip
folder, frames = Path(sys.argv[1]), int(sys.argv[2])
clip = render_clip(2, frames, 192, 256, motion="objects")
refiner = load_refiner("default", device="cpu")
pairs = clip_predictions(clip.depth, 2, 96, 256)
for index, depth in enumerate(refiner.refine_clip(pairs, (192, 256))):
    write_depth_with_meaning(folder / f"objects_{index + 1:03d}.png", depth, kind="disparity",
                             units="relative", written_by="benchmark (clip mode)")
fx = float(clip.cameras[0].intrinsics[0][0])
print(json.dumps({"fov": float(np.degrees(2 * np.arctan(256 / (2 * fx)))),
                  "near_far": [float(v) for v in robust_range(clip.depth[0])]}))
"""
"""Seed 2's `objects` clip refined in clip mode (argv: folder, frames); prints the field of
view and the first frame's robust true distances, which the PNGs' sidecars do not hold."""


def sddr_python() -> str:
    python = os.environ.get("SDDR_PYTHON", str(ROOT / ".venv" / "bin" / "python"))
    if not Path(python).is_file():
        sys.exit(f"no Python with sddr at {python}: set SDDR_PYTHON")
    return python


def run_sddr(code: str, *arguments) -> str:
    done = subprocess.run([sddr_python(), "-c", code, *map(str, arguments)], cwd=ROOT,
                          capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    if done.returncode != 0:
        sys.exit(f"sddr failed: {done.stderr[-2000:]}")
    return done.stdout


def playback(obj: bpy.types.Object, first: int, last: int, passes: int) -> list[float]:
    """Frames per second of frame_set + evaluation over first…last, per pass, after a warm-up."""
    scene = bpy.context.scene
    rates = []
    for index in range(passes + 1):
        start = time.perf_counter()
        for frame in range(first, last + 1):
            scene.frame_set(frame)
            evaluated = obj.evaluated_get(bpy.context.evaluated_depsgraph_get())
            assert len(evaluated.data.vertices) > 0
        if index:
            rates.append((last - first + 1) / (time.perf_counter() - start))
    return rates


def build_animated(folder: Path, cut_edges: bool, step: int = 1) -> bpy.types.Object:
    bpy.ops.wm.read_homefile(use_empty=True)
    settings = bpy.context.scene.sddr
    settings.depth_frames, settings.cut_edges = str(folder), cut_edges
    settings.density, settings.step = "STEP", step
    assert bpy.ops.sddr.build_animated_mesh() == {"FINISHED"}
    return bpy.context.active_object


def build_shape_keys(module, folder: Path) -> bpy.types.Object:
    """The same frames as shape keys: the add-on's grid, one key per frame (the first frame's
    distance map for all, as the animated mesh has)."""
    bpy.ops.wm.read_homefile(use_empty=True)
    files = sorted(folder.glob("box_*.png"))
    first = module.images.read_depth(str(files[0]))
    height, width = first.shape
    mapping = module.geometry.distance_map(first, "DISPARITY", near=1.0, far=10.0)
    k = module.geometry.Intrinsics.from_fov(width, height, 60.0)
    grid = module.geometry.grid_mesh(np.ones_like(first), k)
    obj = bpy.data.objects.new("shape keys", module.meshes.write_mesh("shape keys", grid))
    bpy.context.collection.objects.link(obj)
    obj.shape_key_add(name="Basis", from_mix=False)
    for frame, file in enumerate(files, start=1):
        z = mapping.apply(module.images.read_depth(str(file))).astype(np.float32)
        key = obj.shape_key_add(name=f"frame {frame}", from_mix=False)
        key.points.foreach_set("co", (grid.positions * z.reshape(-1, 1)).ravel())
        for at, value in ((frame - 1, 0.0), (frame, 1.0), (frame + 1, 0.0)):
            key.value = value
            key.keyframe_insert("value", frame=at)
    return obj


def benchmark(frames: int, passes: int, size: tuple[int, int]) -> None:
    folder = Path(tempfile.mkdtemp(prefix="sddr-anim-"))
    module = sys.modules[install(folder)]
    depth = folder / "frames"
    depth.mkdir()
    run_sddr(BOX_FRAMES, depth, frames, *size)
    print(f"bpy {bpy.app.version_string}, {os.cpu_count()} CPUs, load "
          f"{os.getloadavg()[0]:.1f}; {frames} frames of {size[1]}×{size[0]} depth "
          f"(16-bit PNG), {size[0] * size[1]:,} vertices; fps median of {passes} passes")
    cases = {"geometry nodes, cut per frame (default)": lambda: build_animated(depth, True),
             "geometry nodes, Cut Edges off": lambda: build_animated(depth, False),
             "geometry nodes, cut per frame, Step 2": lambda: build_animated(depth, True, 2),
             "geometry nodes, Cut Edges off, Step 2": lambda: build_animated(depth, False, 2),
             "shape keys (no cut)": lambda: build_shape_keys(module, depth)}
    for name, build in cases.items():
        start = time.perf_counter()
        obj = build()
        built = time.perf_counter() - start
        rates = playback(obj, 1, frames, passes)
        print(f"  {name:42s} {statistics.median(rates):6.1f} fps (min {min(rates):.1f}, "
              f"max {max(rates):.1f}); built in {built:.2f} s; load "
              f"{os.getloadavg()[0]:.1f}", flush=True)


def picture(path: Path, frames: int) -> None:
    folder = Path(tempfile.mkdtemp(prefix="sddr-anim-"))
    install(folder)
    depth = folder / "frames"
    depth.mkdir()
    facts = json.loads(run_sddr(CLIP_FRAMES, depth, frames).splitlines()[-1])
    bpy.ops.wm.read_homefile(use_empty=True)
    scene = bpy.context.scene
    settings = scene.sddr
    settings.depth_frames, settings.fov = str(depth), facts["fov"]
    settings.near, settings.far = facts["near_far"]
    assert bpy.ops.sddr.build_animated_mesh() == {"FINISHED"}
    obj = bpy.context.active_object
    obj.data.materials.append(bpy.data.materials.new("grey"))
    assert bpy.ops.sddr.add_camera() == {"FINISHED"}
    added = scene.camera
    side = bpy.data.objects.new("side", added.data)
    side.location.x, side.rotation_euler = 0.6, added.rotation_euler
    side.rotation_euler.z += math.atan2(0.6, 4.0)  # back towards the room's middle
    scene.collection.objects.link(side)
    sun = bpy.data.objects.new("sun", bpy.data.lights.new("sun", "SUN"))
    sun.data.energy = 2.0
    sun.rotation_euler = (math.radians(50), 0, math.radians(30))
    scene.collection.objects.link(sun)
    scene.render.engine, scene.cycles.samples = "CYCLES", 8
    scene.render.resolution_percentage = 100
    scene.view_settings.view_transform = "Standard"
    shown = [1, frames // 3, 2 * frames // 3, frames]
    rows = []
    for camera in (side, added):  # bottom row first: Blender's rows run bottom-up
        scene.camera = camera
        tiles = []
        for frame in shown:
            scene.frame_set(frame)
            scene.render.filepath = str(folder / f"render_{camera.name}_{frame}.png")
            bpy.ops.render.render(write_still=True)
            image = bpy.data.images.load(scene.render.filepath)
            pixels = np.empty(image.size[0] * image.size[1] * 4, np.float32)
            image.pixels.foreach_get(pixels)
            tiles.append(pixels.reshape(image.size[1], image.size[0], 4))
            bpy.data.images.remove(image)
        rows.append(np.concatenate(tiles, axis=1))
    strip = np.concatenate(rows, axis=0)
    out = bpy.data.images.new("strip", strip.shape[1], strip.shape[0])
    out.pixels.foreach_set(strip.ravel())
    out.filepath_raw, out.file_format = str(path), "PNG"
    out.save()
    print(f"{path}: frames {shown} of {frames}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=24)
    parser.add_argument("--passes", type=int, default=5)
    parser.add_argument("--size", default="720x1280", help="H×W of the depth frames")
    parser.add_argument("--picture", type=Path, help="render the docs' picture here instead")
    args = parser.parse_args()
    if args.picture:
        picture(args.picture.resolve(), args.frames)
    else:
        benchmark(args.frames, args.passes, tuple(map(int, args.size.split("x"))))


if __name__ == "__main__":
    main()
