"""Time to build a 1-million-vertex mesh with the Blender extension, in the `bpy` wheel.

The extension is built into its zip and installed as a user would; a 1000×1000 depth map with
step edges spread over 12-px ramps, as refined depth has them (32-bit EXR, what `sddr refine
--format exr` and the add-on's refinement write), and a photo of the same size are made here.
Each case is timed REPEATS times after a warm-up; the median and the spread are printed:

- `sddr.build_mesh`, the whole operator with its defaults: read the EXR, snap the ramps,
  unproject, cut and close the cuts, write the mesh and UVs, add the object (and, with the
  photo, load it and make the material); and as before issue 24 (cut only);
- its parts: `geometry.snap_ramps` and `geometry.grid_mesh` (numpy), `meshes.write_mesh` (bpy
  bulk writes).

Run with the bpy venv's Python, from the repository root (see docs/blender.md):
    .venv-bpy/bin/python benchmarks/blender_mesh.py [--repeats 7]
"""

import argparse
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

ROOT = Path(__file__).resolve().parents[1]
SIDE = 1000


def install(folder: Path) -> str:
    """Build the extension zip with Blender's own builder, install and enable it."""
    builder = (Path(bpy.utils.system_resource("SCRIPTS")) / "addons_core" / "bl_pkg" / "cli"
               / "blender_ext.py")
    subprocess.run([sys.executable, str(builder), "build", "--source-dir",
                    str(ROOT / "blender_addon"), "--output-dir", str(folder)], check=True,
                   stdout=subprocess.DEVNULL)
    (package,) = folder.glob("sddr_depth-*.zip")
    bpy.ops.extensions.package_install_files(filepath=str(package), repo="user_default",
                                             enable_on_install=True)
    return "bl_ext.user_default.sddr_depth"


def save(path: Path, rgb: np.ndarray, *, depth: bool) -> str:
    image = bpy.data.images.new(path.stem, SIDE, SIDE, float_buffer=depth, alpha=False)
    if depth:
        image.colorspace_settings.name = "Non-Color"
    rgba = np.ones((SIDE, SIDE, 4), np.float32)
    rgba[..., :3] = rgb
    image.pixels.foreach_set(rgba[::-1].ravel())
    image.filepath_raw, image.file_format = str(path), "OPEN_EXR" if depth else "PNG"
    image.save()
    bpy.data.images.remove(image)
    return str(path)


RAMP = 12
"""Pixels over which the scene's steps are spread, as sddr's refined depth spreads them."""


def scene_depth() -> np.ndarray:
    """A floor rising towards the horizon with 40 boxes in front of it: many step edges, each
    spread over a RAMP-px ramp (a box filter of the disparity along both axes)."""
    rng = np.random.default_rng(0)
    v = np.linspace(0, 1, SIDE, dtype=np.float32)[:, None]
    depth = np.repeat(8.0 - 5.0 * v, SIDE, axis=1)
    for _ in range(40):
        top, left = rng.integers(0, SIDE - 100, 2)
        size = rng.integers(20, 100)
        depth[top:top + size, left:left + size] = rng.uniform(1.5, 4.0)
    disparity = 1 / depth
    for axis in (0, 1):
        padded = np.concatenate([np.repeat(disparity.take([0], axis), RAMP, axis), disparity,
                                 np.repeat(disparity.take([-1], axis), RAMP, axis)], axis)
        total = np.cumsum(padded, axis=axis, dtype=np.float64)
        ahead = total.take(np.arange(RAMP + RAMP // 2, SIDE + RAMP + RAMP // 2), axis)
        behind = total.take(np.arange(RAMP // 2, SIDE + RAMP // 2), axis)
        disparity = ((ahead - behind) / RAMP).astype(np.float32)
    return 1 / disparity


def timed(run, repeats: int) -> list[float]:
    run()  # warm-up
    times = []
    for _ in range(repeats):
        bpy.ops.wm.read_homefile(use_empty=True)
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    repeats = parser.parse_args().repeats
    folder = Path(tempfile.mkdtemp(prefix="sddr-bench-"))
    module = sys.modules[install(folder)]
    geometry, meshes = module.geometry, module.meshes
    depth = scene_depth()
    depth_file = save(folder / "depth.exr", depth[..., None], depth=True)
    photo_file = save(folder / "photo.png",
                      np.random.default_rng(1).uniform(0, 1, (SIDE, SIDE, 3)), depth=False)
    k = geometry.Intrinsics.from_fov(SIDE, SIDE, 60.0)
    snapped = geometry.snap_ramps(depth, 0.05)
    grid = geometry.grid_mesh(snapped, k, cut_ratio=0.05, close_gaps=True)

    def operator(photo: str, **settings):
        def run():
            bpy.ops.wm.read_homefile(use_empty=True)
            scene = bpy.context.scene.sddr
            scene.depth_path, scene.image_path = depth_file, photo
            scene.depth_kind, scene.cut_edges = "DEPTH", True
            scene.density, scene.step = "STEP", 1
            for name, value in settings.items():
                setattr(scene, name, value)
            assert bpy.ops.sddr.build_mesh() == {"FINISHED"}
        return run

    cases = {
        "sddr.build_mesh (EXR depth only)": operator(""),
        "sddr.build_mesh (EXR depth + photo material)": operator(photo_file),
        "sddr.build_mesh (depth only, cut only: before)": operator(
            "", snap_ramps=False, close_gaps=False),
        "geometry.snap_ramps (numpy)": lambda: geometry.snap_ramps(depth, 0.05),
        "geometry.grid_mesh (numpy, cut and closed)": lambda: geometry.grid_mesh(
            snapped, k, cut_ratio=0.05, close_gaps=True),
        "geometry.grid_mesh (numpy, cut only: before)": lambda: geometry.grid_mesh(
            depth, k, cut_ratio=0.05),
        "meshes.write_mesh (bpy bulk writes)": lambda: meshes.write_mesh("bench", grid),
    }
    print(f"bpy {bpy.app.version_string}, Python {sys.version.split()[0]}, numpy "
          f"{np.__version__}, {os.cpu_count()} CPUs; {SIDE}×{SIDE} depth: "
          f"{len(grid.positions):,} vertices ({grid.grid_vertices:,} of the grid), "
          f"{grid.face_count:,} faces ({grid.cut:,} cut and closed); median of {repeats}")
    for name, run in cases.items():
        times = timed(run, repeats)
        print(f"  {name:48s} {statistics.median(times):6.3f} s  "
              f"(min {min(times):.3f}, max {max(times):.3f})")


if __name__ == "__main__":
    main()
