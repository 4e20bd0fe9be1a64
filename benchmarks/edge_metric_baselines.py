"""What the depth-edge metrics give for ground truth degraded in known ways: figures for
docs/metrics.md, so a method's boundary F1 and flying-pixel rate can be read against them.

    PYTHONPATH=. python benchmarks/edge_metric_baselines.py [--data ../shared/data] [--cost]

On Middlebury 2006 half size (12 scenes), the ground-truth disparity
- shrunk (anti-aliased) to a fraction of its long side and up-sampled again (bicubic, as
  `low` is): the resolution cap of a prediction without one-pixel steps;
- times 1 + a·f, f a smooth field in [−1, 1] (one period across, half down): exact edges with
  a smooth error, which the flying-pixel rate counts where the error reaches 10 % of a step.
Every map is scored by `evaluate` (disparity space). Prints the mean over scenes (min–max),
and how large the steps are that the flying-pixel rate looks at (depth ratio of neighbours
≥ 1.1: `boundaries.STEP`).
Nothing here is tuned; the fractions and amplitudes were fixed before the first run.
`--cost` prints instead the CPU time (best of 3) of `evaluate` and of the two edge metrics on
the first scene, and of the edge metrics on it resized to 1024² and 2048².
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from sddr_core.evaluation.aligned import aligned_prediction
from sddr_core.evaluation.baselines import resize_prediction
from sddr_core.evaluation.boundaries import STEP, boundary_f1, flying_pixel_rate
from sddr_core.evaluation.datasets import open_dataset
from sddr_core.evaluation.metrics import evaluate
from sddr_core.evaluation.runner import PAPER_RATIO

ROOT = Path(__file__).resolve().parents[1]
SHRINK = (PAPER_RATIO, 0.5)
DISTORTION = (0.02, 0.05, 0.1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--cost", action="store_true", help="CPU time instead of scores")
    args = parser.parse_args()
    samples = list(open_dataset("middlebury2006", args.data / "middlebury2006-half"))
    if args.cost:
        return _cost(samples[0].depth, samples[0].valid)
    cases = {f"through {ratio:.3f} of the long side": lambda d, ratio=ratio: _shrunk(d, ratio)
             for ratio in SHRINK}
    cases |= {f"smooth distortion ±{amount:.0%}": lambda d, a=amount: d * (1 + a * _field(d))
              for amount in DISTORTION}
    steps = np.concatenate([_steps(sample.depth, sample.valid) for sample in samples])
    print(f"{steps.size} neighbour pairs with a step of at least {STEP}; their depth ratio's "
          f"10th / 50th / 90th percentiles: "
          + " / ".join(f"{q:.3f}" for q in np.percentile(steps, [10, 50, 90])))
    print(f"{len(samples)} scenes of Middlebury 2006 half; mean (min–max) over scenes\n")
    print("| ground truth | REL ↓ | boundary F1 ↑ | flying ↓ |\n|---|---:|---:|---:|")
    for name, degrade in cases.items():
        scores = []
        for sample in samples:
            disparity = np.where(sample.valid, 1 / np.where(sample.valid, sample.depth, 1), 0)
            scores.append(evaluate(degrade(disparity.astype(np.float32)), sample.depth,
                                   sample.valid, space="disparity"))
        cells = [_summary([s[key] for s in scores]) for key in ("rel", "boundary_f1", "flying")]
        print(f"| {name} | " + " | ".join(cells) + " |")


def _cost(depth: np.ndarray, valid: np.ndarray) -> None:
    """CPU seconds of the edge metrics on a prediction with exact edges and a 2 % noise."""
    for size in (depth.shape, (1024, 1024), (2048, 2048)):
        gt = resize_prediction(np.where(valid, depth, 0).astype(np.float32), size)
        gt = gt.astype(np.float64)
        noise = np.random.default_rng(0).uniform(0.98, 1.02, size)
        pred = np.where(gt > 0, 1 / np.where(gt > 0, gt, 1), 0) * noise
        calls = {"alignment": aligned_prediction, "boundary_f1": boundary_f1,
                 "flying_pixel_rate": flying_pixel_rate}
        if size == depth.shape:
            calls["evaluate (all metrics)"] = evaluate
        times = ", ".join(f"{name} {_cpu_seconds(function, pred, gt):.3f} s"
                          for name, function in calls.items())
        print(f"{size[0]}×{size[1]}: {times}")


def _cpu_seconds(function: Callable[..., object], pred: np.ndarray, gt: np.ndarray) -> float:
    """Best of 3 CPU times of `function(pred, gt, space="disparity")`."""
    times = []
    for _ in range(3):
        start = time.process_time()
        function(pred, gt, space="disparity")
        times.append(time.process_time() - start)
    return min(times)


def _steps(depth: np.ndarray, valid: np.ndarray) -> np.ndarray:
    depth = np.where(valid, depth, np.nan)
    ratios = [np.maximum(a, b) / np.minimum(a, b) for a, b in ((depth[:-1], depth[1:]),
                                                             (depth[:, :-1], depth[:, 1:]))]
    ratios = np.concatenate([r.ravel() for r in ratios])
    return ratios[ratios >= STEP]


def _shrunk(disparity: np.ndarray, ratio: float) -> np.ndarray:
    height, width = disparity.shape
    scale = round(ratio * max(height, width)) / max(height, width)
    small = resize_prediction(disparity, (round(height * scale), round(width * scale)))
    return resize_prediction(small, (height, width))


def _field(disparity: np.ndarray) -> np.ndarray:
    rows, cols = np.mgrid[:disparity.shape[0], :disparity.shape[1]]
    return np.sin(2 * np.pi * cols / disparity.shape[1]) * np.cos(np.pi * rows /
                                                                  disparity.shape[0])


def _summary(values: list[float]) -> str:
    return f"{np.mean(values):.3f} ({min(values):.3f}–{max(values):.3f})"


if __name__ == "__main__":
    main()
