"""The simulated predictor's two properties vs inference resolution, and its speed.

Run: python benchmarks/simulator_properties.py [--seeds 0 1 2]
     [--resolutions 96 192 384 768 1536] [--training-resolution 384] [--middlebury DATA]
Prints a markdown table of edge_error (should fall as resolution rises) and local_inconsistency
(should rise), means over seeds, on the procedural room (512×768, one scene per seed) and, with
--middlebury, on the Middlebury scenes of the data folder. Those are for reporting only: the
simulator's parameters are fixed a priori and must never be tuned to them (docs/simulator.md).
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np

from sddr_core.cli.sample import sample_scene
from sddr_core.evaluation.diagnostics import edge_error, local_inconsistency
from sddr_core.files.depth_io import read_depth
from sddr_core.predictors.simulated import SimulatedPredictor

Scene = tuple[np.ndarray, np.ndarray | None]  # (depth, valid)


def middlebury_scenes(root: Path) -> list[Scene]:
    """(depth, valid) of every Middlebury scene in the data folder (layout: its README.md).

    The files hold disparity d (0 = unknown). Depth is f·B / (d + dmin), but the simulator
    min-max normalises 1/depth, which removes f·B and dmin, so 1/d is an exact stand-in.
    """
    files = sorted(root.glob("middlebury2006-half/*/disp1.png")) + sorted(
        root.glob("aloe-full/aloeGT.png"))
    if not files:
        raise SystemExit(f"--middlebury {root}: no middlebury2006-half/*/disp1.png or "
                         "aloe-full/aloeGT.png found")
    scenes = []
    for file in files:
        disparity = read_depth(file).astype(np.float64)
        valid = disparity > 0
        scenes.append((1 / np.where(valid, disparity, np.inf), valid))
    return scenes


def mean_scores(runs: list[tuple[Scene, int]], resolutions: list[int],
                training_resolution: int) -> dict[int, tuple[float, float]]:
    """resolution → (mean edge_error, mean local_inconsistency) over (scene, seed) runs."""
    scores: dict[int, list[tuple[float, float]]] = {r: [] for r in resolutions}
    for (depth, valid), seed in runs:
        predictor = SimulatedPredictor(depth, valid, seed, training_resolution)
        for r in resolutions:
            prediction = predictor.predict(None, r)
            scores[r].append((edge_error(prediction, depth, valid),
                              local_inconsistency(prediction, depth, valid)))
    return {r: tuple(np.nanmean(values, axis=0)) for r, values in scores.items()}


def predict_seconds(resolution: int = 2048, repeats: int = 5) -> float:
    """Median wall time of one predict() at `resolution` on a ground truth of that size."""
    _, depth = sample_scene(round(resolution * 2 / 3), resolution)
    predictor = SimulatedPredictor(depth)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        predictor.predict(None, resolution)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--resolutions", type=int, nargs="+", default=[96, 192, 384, 768, 1536])
    parser.add_argument("--training-resolution", type=int, default=384)
    parser.add_argument("--middlebury", type=Path, help="the data folder (../shared/data)")
    args = parser.parse_args()

    rooms = [((sample_scene(512, 768, seed)[1], None), seed) for seed in args.seeds]
    tables = {"room 512×768": mean_scores(rooms, args.resolutions, args.training_resolution)}
    if args.middlebury is not None:
        scenes = middlebury_scenes(args.middlebury)
        runs = [(scene, seed) for scene in scenes for seed in args.seeds]
        tables[f"Middlebury ({len(scenes)} scenes)"] = mean_scores(
            runs, args.resolutions, args.training_resolution)

    print(f"r̂ (training resolution) = {args.training_resolution}; seeds {args.seeds}; "
          "lower edge_error = sharper edges, higher local_inconsistency = more drift\n")
    header = "| resolution |" + "".join(f" {name}: edge_error | local_inconsistency |"
                                        for name in tables)
    print(header)
    print("|" + "---:|" * (1 + 2 * len(tables)))
    for r in args.resolutions:
        cells = "".join(f" {tables[name][r][0]:.4f} | {tables[name][r][1]:.4f} |"
                        for name in tables)
        print(f"| {r} |{cells}")
    print(f"\npredict() at 2048 (ground truth 1365×2048): {predict_seconds():.2f} s (median of 5)")


if __name__ == "__main__":
    main()
