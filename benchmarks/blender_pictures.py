"""Renders the pictures in docs/blender.md and the README: `sddr demo`'s sample scene
(sddr_core/cli/sample.py, 768×512), refined as `sddr demo` refines it (its simulated predictor,
the bundled weights; 16-bit PNG disparity, kind and distances from its sidecar), built into a
mesh by the extension with its defaults (ramps snapped, cut, gaps closed), as before issue 24
(cut only), without cutting, and as a displaced plane (its default strength, and strength 1,
the default before issue 26), and the same scene refined two-stage (`sddr demo --mode
two-stage`) built with the defaults, each rendered by Cycles from
the added camera and from a camera moved 1.5 m to the right and turned back towards the scene;
and the README's before/after (the first two, stacked).

The refined depth is made by the project's Python (sddr, `SDDR_PYTHON`, default
.venv/bin/python); everything else runs in the bpy venv, through the installed extension:
    .venv-bpy/bin/python benchmarks/blender_pictures.py [-o docs/img]
"""

import argparse
import math
import os
import subprocess
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("BLENDER_USER_RESOURCES", tempfile.mkdtemp(prefix="sddr-blender-"))
import bpy  # noqa: E402  (after the environment: it reads BLENDER_USER_RESOURCES)
import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from blender_mesh import install  # noqa: E402  (the same installation as the benchmark)

ROOT = Path(__file__).resolve().parents[1]
SIDEWAYS = 1.5
"""Metres the second camera moves to the right; it turns to face the scene's middle (5 m)."""
FOV = 60.0
"""The field of view the pictures assume: the sample scene is drawn in image space, so its
sidecar gives none (docs/decisions.md 182)."""
SAMPLE = ("import sys; from sddr_core.cli.demo import run_demo; "
          "from sddr_core.inference.refiner import load_refiner; "
          "run_demo(load_refiner('default', device='cpu'), sys.argv[1], sys.argv[2])")
"""`sddr demo` itself: image.png and refined.png (among others) in the folder given, refined
in the mode given."""
BUILDS = {"cut-new": {}, "cut-old": {"snap_ramps": False, "close_gaps": False},
          "cut-off": {"cut_edges": False}}
"""Mesh settings over the defaults: now, before issue 24 (cut only), no cutting."""


def render(path: Path) -> np.ndarray:
    """A Cycles still of the scene camera, as H×W×4 float, top row first."""
    scene = bpy.context.scene
    scene.render.engine = "CYCLES"
    scene.cycles.device = "CPU"
    scene.cycles.samples = 16
    scene.render.resolution_percentage = 50
    scene.view_settings.view_transform = "Standard"  # the photo's own colours, unlit
    scene.render.filepath = str(path)
    bpy.ops.render.render(write_still=True)
    image = bpy.data.images.load(str(path))
    width, height = image.size
    pixels = np.empty(width * height * 4, np.float32)
    image.pixels.foreach_get(pixels)
    bpy.data.images.remove(image)
    return pixels.reshape(height, width, 4)[::-1]


def save_png(path: Path, pixels: np.ndarray) -> None:
    height, width = pixels.shape[:2]
    image = bpy.data.images.new(path.stem, width, height, alpha=False)
    image.pixels.foreach_set(pixels[::-1].ravel())
    image.filepath_raw, image.file_format = str(path), "PNG"
    image.save()
    bpy.data.images.remove(image)


def both_views(build) -> np.ndarray:
    """[view from the added camera | view from the camera moved sideways], side by side."""
    bpy.ops.wm.read_homefile(use_empty=True)
    world = bpy.data.worlds.new("grey")
    world.color = (0.05, 0.05, 0.05)
    bpy.context.scene.world = world
    build()
    assert bpy.ops.sddr.add_camera() == {"FINISHED"}
    with tempfile.TemporaryDirectory() as folder:
        straight = render(Path(folder) / "straight.png")
        camera = bpy.context.scene.camera
        camera.location.x = SIDEWAYS
        camera.rotation_euler.z = math.atan2(SIDEWAYS, 5.0)
        sideways = render(Path(folder) / "sideways.png")
    gap = np.ones((straight.shape[0], 8, 4), np.float32)
    return np.concatenate([straight, gap, sideways], axis=1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--output", type=Path, default=ROOT / "docs" / "img")
    output = parser.parse_args().output
    folder = Path(tempfile.mkdtemp(prefix="sddr-pictures-"))
    python = os.environ.get("SDDR_PYTHON", str(ROOT / ".venv" / "bin" / "python"))
    for mode in ("one-stage", "two-stage"):
        subprocess.run([python, "-c", SAMPLE, str(folder / mode), mode], check=True, cwd=ROOT)
    install(folder)

    def mesh(mode: str = "one-stage", **overrides):
        def build():
            settings = bpy.context.scene.sddr
            settings.image_path, settings.depth_path = (str(folder / mode / "image.png"),
                                                        str(folder / mode / "refined.png"))
            assert settings.sidecar == "refined.png.sddr.json"  # kind, Near and Far from it
            settings.fov, settings.unlit = FOV, True
            for name, value in overrides.items():
                setattr(settings, name, value)
            assert bpy.ops.sddr.build_mesh() == {"FINISHED"}
        return build

    def plane(**strength):
        def build():
            mesh()()  # the same settings, then the plane instead of the mesh
            bpy.data.objects.remove(bpy.context.active_object)
            assert bpy.ops.sddr.build_displaced_plane(subdivisions=384,
                                                      **strength) == {"FINISHED"}
        return build

    output.mkdir(parents=True, exist_ok=True)
    pictures = {}
    for name, build in (*((name, mesh(**settings)) for name, settings in BUILDS.items()),
                        ("displaced", plane()), ("displaced-full", plane(strength=1.0)),
                        ("two-stage", mesh("two-stage"))):
        pictures[name] = both_views(build)
        save_png(output / f"blender-{name}.png", pictures[name])
        print(f"wrote {output / f'blender-{name}.png'}")
    gap = np.ones((8, pictures["cut-old"].shape[1], 4), np.float32)
    save_png(output / "blender-before-after.png",
             np.concatenate([pictures["cut-old"], gap, pictures["cut-new"]]))
    print(f"wrote {output / 'blender-before-after.png'}")


if __name__ == "__main__":
    main()
