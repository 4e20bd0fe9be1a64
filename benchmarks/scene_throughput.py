"""Procedural training scenes: scenes per second, where the time goes, and the contact sheet.

Run from the repository root:
    PYTHONPATH=. python benchmarks/scene_throughput.py [--scenes 40] [--sizes 768x1024 1024x1536]
    PYTHONPATH=. python benchmarks/scene_throughput.py \
        --contact-sheet docs/img/scenes-contact-sheet.png

Prints one JSON line per size and worker count (1 process, then `--workers` processes
rendering different seeds side by side), then the seconds spent per primitive kind and in
composing the scenes (drawing the room and its objects, noise grids included) for one
process.
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter
from multiprocessing import Pool

import cv2
import numpy as np

from sddr_core.files.depth_io import write_image
from sddr_core.scenes import primitives
from sddr_core.scenes import rooms as scenes

_KINDS = (primitives.Room, primitives.Box, primitives.Sphere, primitives.Cylinder,
          primitives.Disc, primitives.Heightfield)


def _render(job: tuple[int, int, int]) -> None:
    scenes.render_scene(*job)


def throughput(count: int, height: int, width: int, workers: int) -> float:
    """Scenes per second over seeds 0..count-1."""
    jobs = [(seed, height, width) for seed in range(count)]
    start = time.perf_counter()
    if workers == 1:
        for job in jobs:
            _render(job)
    else:
        with Pool(workers) as pool:
            pool.map(_render, jobs, chunksize=1)
    return count / (time.perf_counter() - start)


def breakdown(count: int, height: int, width: int) -> dict[str, float]:
    """Seconds per primitive kind's intersections and in composition, over `count` scenes."""
    spent: Counter[str] = Counter()

    def timed(kind, method):
        def wrapper(*args, **kwargs):
            start = time.perf_counter()
            result = method(*args, **kwargs)
            spent[kind] += time.perf_counter() - start
            return result
        return wrapper

    originals = {cls: cls.intersect for cls in _KINDS}
    compose = scenes.compose_scene
    for cls in _KINDS:
        cls.intersect = timed(cls.kind, cls.intersect)
    scenes.compose_scene = timed("compose", compose)
    start = time.perf_counter()
    try:
        for seed in range(count):
            scenes.render_scene(seed, height, width)
    finally:
        for cls, method in originals.items():
            cls.intersect = method
        scenes.compose_scene = compose
    spent["total"] = time.perf_counter() - start
    return {kind: round(seconds, 3) for kind, seconds in spent.most_common()}


def colourise(scene: scenes.Scene) -> np.ndarray:
    """Turbo of inverse depth (min–max per scene, near = red, far = blue), darkened by the
    surface's slant to a light, so relief and slanted planes show; H×W×3 uint8 BGR."""
    inverse = 1.0 / scene.depth
    scaled = (inverse - inverse.min()) / max(float(np.ptp(inverse)), 1e-9)
    colour = cv2.applyColorMap((scaled * 255).astype(np.uint8), cv2.COLORMAP_TURBO)
    height, width = scene.depth.shape
    points = scene.camera.ray_directions(height, width) * scene.depth
    normal = np.cross(np.gradient(points, axis=2), np.gradient(points, axis=1), axis=0)
    normal /= np.linalg.norm(normal, axis=0) + 1e-12
    light = np.array([0.3, -0.8, -0.5]) / np.linalg.norm([0.3, -0.8, -0.5])
    shade = 0.45 + 0.55 * np.abs(np.tensordot(light, normal, axes=1))
    return (colour * shade[..., None]).astype(np.uint8)


def contact_sheet(path: str, height: int = 240, width: int = 320) -> None:
    """Seeds 0–15 rendered at the tile size (rods are sized in its pixels), 4 × 4."""
    tiles = [colourise(scenes.render_scene(seed, height, width)) for seed in range(16)]
    rows = [np.hstack(tiles[row * 4:row * 4 + 4]) for row in range(4)]
    write_image(path, np.vstack(rows)[..., ::-1], (cv2.IMWRITE_PNG_COMPRESSION, 9))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenes", type=int, default=40)
    parser.add_argument("--sizes", nargs="+", default=["768x1024", "1024x1536"])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--contact-sheet", metavar="PNG")
    args = parser.parse_args()
    cv2.setNumThreads(1)  # one core per process: the workers are the parallelism
    if args.contact_sheet:
        contact_sheet(args.contact_sheet)
        return
    for size in args.sizes:
        height, width = map(int, size.split("x"))
        for workers in sorted({1, args.workers}):
            rate = throughput(args.scenes, height, width, workers)
            print(json.dumps({"size": size, "workers": workers, "scenes": args.scenes,
                              "scenes_per_s": round(rate, 2)}))
        print(json.dumps({"size": size, "seconds_by_part": breakdown(args.scenes, height, width)}))


if __name__ == "__main__":
    main()
