"""Edge snapping's settings on procedural scenes with a photo and exact depth (decision on
snapping in docs/decisions.md).

    PYTHONPATH=. python benchmarks/edge_snap_settings.py [--weights default] [--json OUT]
        [--radii 4,6,8,10] [--min-steps 0.02,0.05,0.1] [--colour-sigmas 0.05,0.1,0.2]
        [--cost-size 2048]

Refines 16 procedural scenes one-stage (the sample scene, seeds 1-8, with its own photo; the
training rooms, seeds 2,000,000-2,000,007, photographed as each primitive's colour times a
fractal texture), snaps them with every setting of the grid, and prints mean flying-pixel rate,
boundary F1, REL, ORD and D³R against exact depth per setting, with each setting's cost: its
median time on `sddr bench`'s cost-size² scene over a one-stage refine of that scene, timed in
turn. It marks the one the decision's rule picks. Middlebury plays no part.
"""

from __future__ import annotations

import argparse
import itertools
import json
import time

import numpy as np
import torch

from sddr_core import load_refiner
from sddr_core.cli.bench import interleaved_medians
from sddr_core.cli.sample import sample_scene
from sddr_core.evaluation.metrics import evaluate
from sddr_core.evaluation.runner import PAPER_RATIO
from sddr_core.maps.edge_snap import snap_edges
from sddr_core.predictors.simulated import SimulatedPredictor
from sddr_core.scenes import photograph, render_scene

HEIGHT, WIDTH = 512, 768
SAMPLE_SEEDS = range(1, 9)
ROOM_SEEDS = range(2_000_000, 2_000_008)
RADII = (4, 6, 8, 10)
MIN_STEPS = (0.02, 0.05, 0.1)
COLOUR_SIGMAS = (0.05, 0.1, 0.2)
SLACK = 0.01
"""How much worse (relative) than unsnapped mean REL and ORD may be for a setting to count."""
D3R_SLACK = 0.1
"""How much worse (relative) than unsnapped mean D³R may be for a setting to count."""
COST = 0.1
"""The most a setting may cost, as a fraction of a one-stage refine at the cost size (issue 24)."""
COST_REPEATS = 3
TIE = 0.002
"""Flying-pixel rates within this of the best count as tied."""


def room_photo(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(photo uint8, depth) of a training room (`sddr_core.scenes.photograph`)."""
    scene = render_scene(seed, HEIGHT, WIDTH)
    return photograph(scene, seed), scene.depth


def scenes():
    for seed in SAMPLE_SEEDS:
        yield f"sample-{seed}", *sample_scene(HEIGHT, WIDTH, seed)
    for seed in ROOM_SEEDS:
        yield f"room-{seed}", *room_photo(seed)


def scores(prediction: np.ndarray, depth: np.ndarray) -> dict[str, float]:
    measured = evaluate(prediction, depth, space="disparity")
    return {key: measured[key] for key in ("flying", "boundary_f1", "rel", "ord", "d3r")}


def costs(refiner, grid: list[tuple], size: int) -> dict[str, float]:
    """Each setting's median seconds over a one-stage refine's, on bench's size² scene."""
    photo, depth = sample_scene(size, size)
    predictor = SimulatedPredictor(depth)
    low, high = predictor.predict(None, max(8, size // 4)), predictor.predict(None, size)
    refined = refiner.refine(low, high)
    timed = [lambda: refiner.refine(low, high)]
    timed += [lambda s=setting: snap_edges(refined, photo, radius=s[0], min_step=s[1],
                                          colour_sigma=s[2]) for setting in grid]
    refine, *snaps = interleaved_medians(timed, torch.device("cpu"), COST_REPEATS)
    return {str(setting): seconds / refine for setting, seconds in zip(grid, snaps, strict=True)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--weights", default="default")
    parser.add_argument("--json", help="also write every score here")
    parser.add_argument("--radii", type=_numbers(int), default=RADII)
    parser.add_argument("--min-steps", type=_numbers(float), default=MIN_STEPS)
    parser.add_argument("--colour-sigmas", type=_numbers(float), default=COLOUR_SIGMAS)
    parser.add_argument("--cost-size", type=int, default=2048)
    args = parser.parse_args()
    refiner = load_refiner(args.weights, device="cpu")
    grid = list(itertools.product(args.radii, args.min_steps, args.colour_sigmas))
    cost = costs(refiner, grid, args.cost_size)
    table: dict[str, list[dict[str, float]]] = {"unsnapped": []}
    table.update({str(setting): [] for setting in grid})
    start = time.perf_counter()
    for name, photo, depth in scenes():
        long_side = max(depth.shape)
        predictor = SimulatedPredictor(depth, seed=0,
                                       training_resolution=round(PAPER_RATIO * long_side))
        low = predictor.predict(photo, predictor.training_resolution)
        high = predictor.predict(photo, long_side)
        refined = refiner.refine(low, high, out_size=depth.shape)
        table["unsnapped"].append(scores(refined, depth))
        for radius, min_step, sigma in grid:
            snapped = snap_edges(refined, photo, radius=radius, min_step=min_step,
                                 colour_sigma=sigma)
            table[str((radius, min_step, sigma))].append(scores(snapped, depth))
        print(f"{name}: unsnapped flying {table['unsnapped'][-1]['flying']:.4f} "
              f"({time.perf_counter() - start:.0f} s)", flush=True)
    means = {key: {metric: float(np.nanmean([s[metric] for s in rows])) for metric in rows[0]}
             for key, rows in table.items()}
    base = means["unsnapped"]
    allowed = [s for s in grid if means[str(s)]["rel"] <= base["rel"] * (1 + SLACK)
               and means[str(s)]["ord"] <= base["ord"] * (1 + SLACK)
               and means[str(s)]["boundary_f1"] >= base["boundary_f1"]
               and means[str(s)]["d3r"] <= base["d3r"] * (1 + D3R_SLACK)
               and cost[str(s)] <= COST]
    pick = None
    if allowed:
        best = min(means[str(s)]["flying"] for s in allowed)
        tied = [s for s in allowed if means[str(s)]["flying"] <= best + TIE]
        pick = min(tied, key=lambda s: (s[0], -s[1], abs(s[2] - 0.1)))
    print("setting (radius, min_step, colour_sigma) | flying | boundary F1 | REL | ORD | D³R "
          f"| cost at {args.cost_size}² (× refine)")
    for key, values in means.items():
        mark = "  <- picked" if pick is not None and key == str(pick) else ""
        print(f"{key} | {values['flying']:.4f} | {values['boundary_f1']:.4f} | "
              f"{values['rel']:.4f} | {values['ord']:.4f} | {values['d3r']:.4f} | "
              f"{cost.get(key, 0):.3f}{mark}")
    print(f"picked: {pick}" if pick else "no setting passes the rule")
    if args.json:
        with open(args.json, "w") as file:
            json.dump({"means": means, "cost": cost, "picked": pick, "scores": table}, file,
                      indent=1)


def _numbers(kind):
    """An argparse type: comma-separated numbers, e.g. "10,12,16"."""
    return lambda text: tuple(kind(item) for item in text.split(","))


if __name__ == "__main__":
    main()
