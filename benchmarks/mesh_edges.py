"""How the Blender extension's mesh holds up at depth edges: refined depth of scenes whose exact
depth is known, built by `sddr.build_mesh` with its default settings (issue 24, part 4).

Per scene, three figures:
- see-through: the share of the added camera's pixel centres whose ray misses the mesh (the
  world shows through);
- flying: the share of the vertices within 3 px of a true discontinuity whose depth floats
  between its two sides (`sddr_core.evaluation.boundaries`' flying-pixel rule, the mesh's
  inverse depth aligned to the truth's by least squares);
- kept: the share of the pixels that keep a vertex.

The scenes are `sddr demo`'s sample scene (`sddr_core.cli.sample`, with the demo's simulated
predictor and the bundled weights), its room with boxes only, and the room with near poles 1, 2
and 4 px wide, refined the same way, one-stage as `sddr demo` or two-stage (`--mode
two-stage`: the add-on's Two-Stage mode, 3 steps, the simulator predicting each window from its
crop), and written as `sddr demo` writes its refined.png (16-bit PNG disparity). bpy and torch
never share a process: this script runs in both Pythons, in three roles:

    .venv-bpy/bin/python benchmarks/mesh_edges.py [--size demo|small] [--mode M] [--weights W]
                                                  [--old]                      # the table
    .venv/bin/python benchmarks/mesh_edges.py scenes FOLDER [--size S] [--mode M] [--weights W]
    .venv/bin/python benchmarks/mesh_edges.py score FILE.npz                    # flying rates

The first calls the other two through `SDDR_PYTHON` (default .venv/bin/python). `--old` builds
as before issue 24 too (cut at the same ratio, no ramp snapping, no closing), for comparison.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SIZES = {"demo": (512, 768), "small": (144, 216)}
"""(height, width) of the scenes: the demo's own size, and a small one for the tests."""
POLE_WIDTHS = (1, 2, 4)
POLE_DEPTH = 2.0
"""Metres; the background runs from 3 m (bottom) to 8 m (top), like the sample scene's room."""
FOV = 60.0
"""Degrees across the width, as docs/blender.md's pictures of the sample scene use."""
OLD_SETTINGS = {"snap_ramps": False, "close_gaps": False}
"""Issue 24's `before`: the same cut ratio, no snapping, no closing faces."""


# ------------------------------------------------------------------ torch side: scenes, score

def pole_depth(height: int, width: int, pole_width: int) -> np.ndarray:
    """The sample scene's room (3 m at the bottom, 8 m at the top) with vertical poles of
    `pole_width` px at every phase of 4 columns and one horizontal wire, all POLE_DEPTH away."""
    v = np.linspace(0, 1, height, dtype=np.float32)[:, None]
    depth = np.repeat(8.0 - 5.0 * v, width, axis=1)
    for i, left in enumerate(range(width // 10, width - width // 10, width // 6)):
        depth[:, left + i % 4:left + i % 4 + pole_width] = POLE_DEPTH
    depth[height // 3:height // 3 + pole_width, :] = POLE_DEPTH
    return depth


def box_depth(height: int, width: int) -> np.ndarray:
    """The same room with nine boxes 1.5-5 m away, each at least 10 % of the height across:
    steps only, no structure thinner than the refiner can resolve."""
    rng = np.random.default_rng(1)
    v = np.linspace(0, 1, height, dtype=np.float32)[:, None]
    depth = np.repeat(8.0 - 5.0 * v, width, axis=1)
    for _ in range(9):
        side = int(rng.uniform(0.1, 0.25) * height)
        top, left = rng.integers(0, height - side), rng.integers(0, width - side)
        depth[top:top + side, left:left + side] = rng.uniform(1.5, 5.0)
    return depth


def make_scenes(folder: Path, size: str, mode: str = "one-stage",
                weights: str = "default") -> dict[str, dict[str, str]]:
    """Per scene, refined.png (16-bit disparity, as `sddr demo` writes it) and exact.npy."""
    from sddr_core.cli.sample import sample_scene
    from sddr_core.files.depth_io import write_depth
    from sddr_core.inference.coarse_to_fine import CoarseToFine
    from sddr_core.inference.refiner import load_refiner
    from sddr_core.inference.windows import STEPS
    from sddr_core.predictors.simulated import SimulatedPredictor

    height, width = SIZES[size]
    scenes = {"demo": sample_scene(height, width)[1], "boxes": box_depth(height, width)}
    scenes.update({f"poles {w} px": pole_depth(height, width, w) for w in POLE_WIDTHS})
    refiner = load_refiner(weights, device="cpu")
    written = {}
    for name, exact in scenes.items():
        predictor = SimulatedPredictor(exact)
        low = predictor.predict(None, predictor.training_resolution)
        high = predictor.predict(None, max(exact.shape))
        if mode == "two-stage":  # the simulator reads its windows' place, not the photo
            photo = np.zeros((*exact.shape, 3), np.uint8)
            refined = CoarseToFine(refiner, predictor).two_stage(photo, STEPS, (low, high))[0]
        else:
            refined = refiner.refine(low, high)
        place = folder / name.replace(" ", "-")
        place.mkdir(parents=True, exist_ok=True)
        written[name] = {"refined": str(write_depth(place / "refined.png", refined)),
                         "exact": str(place / "exact.npy")}
        np.save(place / "exact.npy", exact)
    return written


def score(path: Path) -> dict[str, dict[str, float]]:
    """Flying rate and band size of each scene's vertex depths (NaN: no vertex) in `path`."""
    from sddr_core.evaluation.boundaries import discontinuity_band, flying_pixel_rate

    data = np.load(path)
    scores = {}
    for name in sorted({key.split("/")[0] for key in data.files}):
        vertex, exact = data[f"{name}/vertex_depth"], data[f"{name}/exact"]
        kept = np.isfinite(vertex)
        disparity = np.where(kept, 1.0 / np.where(kept, vertex, 1.0), np.nan)
        scores[name] = {
            "flying": flying_pixel_rate(disparity, exact, mask=kept, space="disparity"),
            "band_vertices": int((discontinuity_band(exact) & kept).sum())}
    return scores


# --------------------------------------------------------------------------- bpy side: mesh

def see_through(obj, camera, points: np.ndarray | None = None) -> np.ndarray:
    """Whether the ray from `camera` through each image point misses `obj`: `points` [P, 2]
    (u, v) image coordinates, by default every pixel centre (then the result is H×W)."""
    import bpy
    from mathutils import Vector
    from mathutils.bvhtree import BVHTree

    width, height, fx, fy, cx, cy = obj["sddr_intrinsics"]
    shape = None
    if points is None:
        shape = (int(height), int(width))
        v, u = np.indices(shape)
        points = np.stack([u.ravel(), v.ravel()], axis=1)
    depsgraph = bpy.context.evaluated_depsgraph_get()
    tree = BVHTree.FromObject(obj, depsgraph)  # in the object's space: camera space
    to_mesh = obj.matrix_world.inverted() @ camera.matrix_world
    origin, turn = to_mesh.translation, to_mesh.to_3x3()
    missed = np.array([tree.ray_cast(origin, turn @ Vector(((u - cx) / fx, -(v - cy) / fy,
                                                            -1.0)))[0] is None
                       for u, v in points.tolist()])
    return missed.reshape(shape) if shape else missed


def vertex_depth(obj) -> np.ndarray:
    """H×W: the distance of the vertex at each pixel centre (the nearest, where a closing face
    put a background copy behind it), NaN where none is."""
    width, height, fx, fy, cx, cy = obj["sddr_intrinsics"]
    mesh = obj.data
    points = np.empty(len(mesh.vertices) * 3, np.float32)
    mesh.attributes["position"].data.foreach_get("vector", points)
    x, y, z = points.reshape(-1, 3).T.astype(np.float64)  # mesh space is camera space
    u, v = fx * x / -z + cx, -fy * y / -z + cy
    on_centre = (np.abs(u - np.round(u)) < 1e-3) & (np.abs(v - np.round(v)) < 1e-3)
    depth = np.full((int(height), int(width)), np.inf)
    np.minimum.at(depth, (np.round(v[on_centre]).astype(int), np.round(u[on_centre]).astype(int)),
                  -z[on_centre])
    return np.where(np.isfinite(depth), depth, np.nan)


def build(depth_file: str, **settings):
    """A mesh of `depth_file` as disparity, the add-on's defaults but for `settings`, and its
    camera: (object, camera)."""
    import bpy

    bpy.ops.wm.read_homefile(use_empty=True)
    scene = bpy.context.scene
    scene.sddr.depth_path, scene.sddr.depth_kind, scene.sddr.fov = depth_file, "DISPARITY", FOV
    for name, value in settings.items():
        setattr(scene.sddr, name, value)
    assert bpy.ops.sddr.build_mesh() == {"FINISHED"}
    obj = bpy.context.active_object
    assert bpy.ops.sddr.add_camera() == {"FINISHED"}
    bpy.context.view_layer.update()
    return obj, scene.camera


def measure(scenes: dict[str, dict[str, str]], folder: Path, python: str,
            **settings) -> dict[str, dict[str, float]]:
    """The three figures of each scene's mesh (built with `settings` over the defaults)."""
    figures, arrays = {}, {}
    for name, files in scenes.items():
        obj, camera = build(files["refined"], **settings)
        depth = vertex_depth(obj)
        figures[name] = {"see_through": float(see_through(obj, camera).mean()),
                         "kept": float(np.isfinite(depth).mean()),
                         "vertices": len(obj.data.vertices), "faces": len(obj.data.polygons)}
        arrays[f"{name}/vertex_depth"] = depth
        arrays[f"{name}/exact"] = np.load(files["exact"])
    np.savez(folder / "vertices.npz", **arrays)
    scored = json.loads(run_sddr(python, "score", str(folder / "vertices.npz")))
    for name in figures:
        figures[name].update(scored[name])
    return figures


def run_sddr(python: str, *arguments: str) -> str:
    """This script's torch side in the project's Python; its JSON output."""
    done = subprocess.run([python, str(Path(__file__).resolve()), *arguments], cwd=ROOT,
                          capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    if done.returncode != 0:
        raise RuntimeError(f"{python} {' '.join(arguments)} failed:\n{done.stderr[-2000:]}")
    return done.stdout.splitlines()[-1]


def table(figures: dict[str, dict[str, float]]) -> str:
    lines = ["| scene | see-through | flying (band vertices) | kept | vertices | faces |",
             "|---|---|---|---|---|---|"]
    for name, f in figures.items():
        lines.append(f"| {name} | {100 * f['see_through']:.3f} % | {100 * f['flying']:.2f} % "
                     f"({f['band_vertices']:,}) | {100 * f['kept']:.2f} % | "
                     f"{f['vertices']:,} | {f['faces']:,} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("role", nargs="?", default="table", choices=("table", "scenes", "score"))
    parser.add_argument("path", nargs="?", type=Path)
    parser.add_argument("--size", choices=tuple(SIZES), default="demo")
    parser.add_argument("--mode", choices=("one-stage", "two-stage"), default="one-stage",
                        help="how the scenes are refined (default: one-stage, as sddr demo)")
    parser.add_argument("--weights", default="default",
                        help="the refiner's weights (default: the bundled file)")
    parser.add_argument("--old", action="store_true", help="also build as before issue 24")
    args = parser.parse_args()
    if args.role == "scenes":
        print(json.dumps(make_scenes(args.path, args.size, args.mode, args.weights)))
        return
    if args.role == "score":
        print(json.dumps(score(args.path)))
        return
    import tempfile

    os.environ.setdefault("BLENDER_USER_RESOURCES", tempfile.mkdtemp(prefix="sddr-blender-"))
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from blender_mesh import install

    folder = Path(tempfile.mkdtemp(prefix="sddr-mesh-edges-"))
    python = os.environ.get("SDDR_PYTHON", str(ROOT / ".venv" / "bin" / "python"))
    scenes = json.loads(run_sddr(python, "scenes", str(folder), "--size", args.size,
                                 "--mode", args.mode, "--weights", os.path.abspath(args.weights)
                                 if Path(args.weights).is_file() else args.weights))
    install(folder)
    print(f"{args.size} scenes {SIZES[args.size][1]}×{SIZES[args.size][0]}, refined {args.mode}, "
          "default settings:")
    print(table(measure(scenes, folder, python)))
    if args.old:
        print("before issue 24 (cut 0.05, no snapping, no closing):")
        print(table(measure(scenes, folder, python, **OLD_SETTINGS)))


if __name__ == "__main__":
    main()
